"""One request's context, carried the same way in the API worker and in the runner: its id, its
deadline, and where its time went.

The edge makes it (``face_api/http/observability.py``: the client's ``x-request-id`` or the trace
id BentoML logs, the ``FACE_REQUEST_TIMEOUT_S`` deadline) and sets it for the request's task; the
runner call carries its id and deadline across (``to_wire``), and the runner sets it again for its
own work, whose stages travel back with the answer. Everything reads it with ``current()``; only
the other service's methods take it, as their ``request`` (a ``CallContext``).

Stages are milliseconds by name, sent back as ``Server-Timing``: the API worker records ``parse``
(everything before the handler: body, JSON, validation), ``base64``, ``hop`` (the round trip to
the runner less the runner's own time) and ``response`` (serializing the answer); the runner
records ``decode``, ``letterbox``, ``detect-queue``, ``detect``, ``nms``, ``align``,
``embed-queue``, ``embed``. A stage that runs more than once in a request is summed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

SERVER_TIMING = b"server-timing"


class CallContext(BaseModel):
    """What crosses to another service with a call made for a request: its id, and the time left
    to it (the other service's deadline is this one's; None: no deadline)."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    deadline_s: float | None = None


@dataclass
class RequestContext:
    id: str | None = None
    deadline_s: float | None = None  # None: no deadline (work outside a served request)
    started: float = field(default_factory=time.perf_counter)
    handler_ended: float | None = None
    ms: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, milliseconds: float) -> None:
        self.ms[stage] = self.ms.get(stage, 0.0) + milliseconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, since_ms(start))

    def server_timing(self) -> bytes:
        """``Server-Timing`` syntax: ``decode;dur=1.93, detect;dur=11.20, ...``."""
        parts = []
        for name, ms in self.ms.items():
            parts.append(f"{name};dur={ms:.2f}")
        return ", ".join(parts).encode()

    @property
    def deadline_at(self) -> float | None:
        """When the deadline passes, on ``time.perf_counter``'s clock; None for no deadline."""
        return None if self.deadline_s is None else self.started + self.deadline_s

    def to_wire(self) -> CallContext:
        """What crosses to another service with a call made for this request, now."""
        left = (
            None
            if self.deadline_s is None
            else max(0.0, self.deadline_s - since_ms(self.started) / 1000)
        )
        return CallContext(id=self.id, deadline_s=left)

    @classmethod
    def from_wire(cls, carried: CallContext) -> RequestContext:
        """The context a service serves a call in: the caller's id and deadline, timed here."""
        return cls(id=carried.id, deadline_s=carried.deadline_s)


def since_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


_current: ContextVar[RequestContext | None] = ContextVar("face_api_request", default=None)


def current() -> RequestContext:
    """The request being served's context, or a throwaway one outside a request."""
    return _current.get() or RequestContext()


@contextmanager
def serving(context: RequestContext) -> Iterator[RequestContext]:
    """``context`` is the current request's for the block (and the tasks it starts)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


class RequestIdLogFilter(logging.Filter):
    """Adds the request's id to BentoML's access log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        value = current().id
        if value is not None and isinstance(record.args, tuple):
            record.msg = f"{record.msg} (request_id=%s)"
            record.args = (*record.args, value)
        return True
