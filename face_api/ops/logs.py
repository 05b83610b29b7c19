"""This project's logging inside BentoML's: our INFO lines, request ids in the access log, no
client data in BentoML's error lines, and one line per record: whatever a client sent reaches a
log only escaped (``GET /x%0A<a forged line>`` had put a forged line in the log, and ESC
sequences reached it raw)."""

from __future__ import annotations

import logging

from face_api.ops.bentoml_private import REQUEST_ERROR_LOGGERS
from face_api.ops.context import RequestIdLogFilter

BENTOML_ACCESS_LOGGER = "bentoml.access"


def enable_service_logging() -> None:
    """Let this project's INFO lines through BentoML's server logging (root is at WARNING), and
    keep request data out of BentoML's error lines.

    BentoML's dictConfig may also have disabled loggers created before it ran.
    """
    for name in ("face_api", "face_api.runner"):
        logger = logging.getLogger(name)
        logger.disabled = False
    logging.getLogger("face_api").setLevel(logging.INFO)
    for name in REQUEST_ERROR_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactClientErrors) for f in logger.filters):
            logger.addFilter(RedactClientErrors())
    access = logging.getLogger(BENTOML_ACCESS_LOGGER)
    if not any(isinstance(f, RequestIdLogFilter) for f in access.filters):
        access.addFilter(RequestIdLogFilter())
    # Every record passes a handler of the root's or of BentoML's (which does not propagate).
    for logger in (logging.getLogger(), logging.getLogger("bentoml")):
        for handler in logger.handlers:
            if not any(isinstance(f, OneLine) for f in handler.filters):
                handler.addFilter(OneLine())


def escaped(text: str) -> str:
    """``text`` with every character that does not print (line breaks, ESC, zero-width and
    bidirectional marks) as its escape: ``\\n``, ``\\x1b``, ``\\u200b``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class OneLine(logging.Filter):
    """A record's message on one line, its characters that do not print escaped (its
    traceback, the server's own text, is left as it is)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = escaped(message)
        if shown is not message:
            record.msg, record.args = shown, ()
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
