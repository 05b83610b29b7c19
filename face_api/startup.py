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
from typing import NoReturn

log = logging.getLogger("face_api")


# The loggers through which BentoML reports a request it could not take (``log_exception``).
BENTOML_REQUEST_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.serve")


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
