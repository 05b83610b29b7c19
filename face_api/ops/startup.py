"""Refusing to start: a configuration error in a worker stops the whole server, loudly.

BentoML restarts a worker whose constructor raises, forever; a service that cannot serve
(no API key, no CUDA when CUDA was required) must instead exit, so that the operator sees the
cause and a supervisor does not report a live-but-useless server.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextvars import ContextVar
from typing import NoReturn

log = logging.getLogger("face_api")


# The loggers through which BentoML reports a request it could not take (``log_exception``).
BENTOML_REQUEST_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.serve")
BENTOML_ACCESS_LOGGER = "bentoml.access"


def start_worker() -> None:
    """What every service's worker does first: stop with the server, log as this project does."""
    exit_with_parent()
    enable_service_logging()


def enable_service_logging() -> None:
    """Let this project's INFO lines through BentoML's server logging (root is at WARNING), and
    keep request data out of BentoML's error lines.

    BentoML's dictConfig may also have disabled loggers created before it ran.
    """
    for name in ("face_api", "face_api.runner"):
        logger = logging.getLogger(name)
        logger.disabled = False
    logging.getLogger("face_api").setLevel(logging.INFO)
    for name in BENTOML_REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactClientErrors) for f in logger.filters):
            logger.addFilter(RedactClientErrors())
    access = logging.getLogger(BENTOML_ACCESS_LOGGER)
    if not any(isinstance(f, RequestIdLogFilter) for f in access.filters):
        access.addFilter(RequestIdLogFilter())


# The id of the request being served (set by the HTTP edge's ``RequestIdMiddleware``).
request_id: ContextVar[str | None] = ContextVar("face_api_request_id", default=None)


class RequestIdLogFilter(logging.Filter):
    """Adds the request's ``x-request-id`` to BentoML's access log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        value = request_id.get()
        if value is not None and isinstance(record.args, tuple):
            record.msg = f"{record.msg} (request_id=%s)"
            record.args = (*record.args, value)
        return True


class RedactClientErrors(logging.Filter):
    """A client's invalid request, logged by BentoML at ERROR with a traceback whose pydantic
    message quotes the input (an excerpt of the image's base64), becomes one INFO line that
    names only the fields and error types.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            fields = ", ".join(
                f"{'.'.join(str(part) for part in item['loc']) or 'body'} ({item['type']})"
                for item in error.errors(include_input=False, include_url=False)
            )
            record.msg = f"{record.getMessage()}: invalid request: {fields}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent() -> None:
    """Have this worker process stopped (SIGTERM) when its parent, the `bentoml serve` process,
    dies. BentoML starts each worker in a process group of its own, so a SIGKILL to the main
    process left the workers running and holding the port (a restarted server then shared it
    with the old one's workers). Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        log.warning("could not ask to be stopped with the server (prctl errno %d)", errno)
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


class StartupError(RuntimeError):
    """A setting or the environment makes serving impossible."""


def refuse_to_start(message: str) -> NoReturn:
    log.critical("refusing to start: %s", message)
    print(f"face-api refusing to start: {message}", file=sys.stderr, flush=True)
    # The worker's parent is the `bentoml serve` process (its circus arbiter): stop it too.
    if _parent_is_bentoml():
        os.kill(os.getppid(), signal.SIGTERM)
    raise StartupError(message)


def _parent_is_bentoml() -> bool:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as cmdline:
            return b"bentoml" in cmdline.read()
    except OSError:
        return False
