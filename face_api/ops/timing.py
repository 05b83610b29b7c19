"""Where a request's time goes: named stages in milliseconds, sent back as ``Server-Timing``.

The API worker records ``parse`` (everything before the handler: body, JSON, validation),
``base64``, ``hop`` (the round trip to the runner less the runner's own time) and ``response``
(serializing the answer); the runner records its stages (``decode``, ``letterbox``,
``detect-queue``, ``detect``, ``nms``, ``align``, ``embed-queue``, ``embed``) and they travel
back with its answer. A stage that runs more than once in a request is summed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

SERVER_TIMING = b"server-timing"


class Timings:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.handler_ended: float | None = None
        self.ms: dict[str, float] = {}

    def add(self, stage: str, milliseconds: float) -> None:
        self.ms[stage] = self.ms.get(stage, 0.0) + milliseconds

    def merge(self, stages: Mapping[str, float]) -> None:
        for stage, milliseconds in stages.items():
            self.add(stage, milliseconds)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, since_ms(start))

    def header(self) -> bytes:
        """``Server-Timing`` syntax: ``decode;dur=1.93, detect;dur=11.20, ...``."""
        return ", ".join(f"{name};dur={ms:.2f}" for name, ms in self.ms.items()).encode()


def since_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


# The timings of the request being served (set by the API's ``ServerTimingMiddleware``).
current: ContextVar[Timings | None] = ContextVar("face_api_timings", default=None)


def request_timings() -> Timings:
    """The current request's timings, or a throwaway record outside a request."""
    return current.get() or Timings()
