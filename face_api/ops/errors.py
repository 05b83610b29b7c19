"""The one error type, and the one envelope in which answers cross between the services.

An ``ApiError`` is raised anywhere a request cannot be served (a bad image in the pipeline, an
unknown gallery in the store, a refused key at the edge); it knows its HTTP status, its message
and, for a 422, the field, and ``body()`` is its answer in the contract's shape: FastAPI's
``{"detail": [{"loc", "msg", "type"}]}`` for invalid input, ``{"detail": "..."}`` otherwise.

The runner and the gallery service answer every call with a ``Reply``: an exception raised in a
BentoML service reaches its caller only as an opaque 500, so the error travels as data
(``ErrorData``) and the caller raises it again (``Reply.unwrap``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from face_api.ops.context import RequestContext, since_ms

T = TypeVar("T")

RETRY_AFTER_S = 1
# Answers a client may simply send again, a little later.
RETRYABLE = (429, 503)


class ApiError(Exception):
    """A request that cannot be served: its status, message and, for a 422, the field.

    ``items`` are a 422's FastAPI-style error items; by default the one item naming ``field``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        field: str | int | None = None,
        kind: str = "value_error",
        items: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message if field is None else f"{field}: {message}")
        self.status, self.message, self.field, self.kind = status, message, field, kind
        if items is None and status == 422:
            loc = ["body"] if field is None else ["body", field]
            items = [{"loc": loc, "msg": message, "type": kind}]
        self.items = items

    @classmethod
    def invalid(cls, field: str | int | None, message: str, kind: str = "value_error") -> ApiError:
        """422: the request's ``field`` (None: the body as a whole) cannot be served."""
        return cls(422, message, field, kind)

    @classmethod
    def refused(cls, field: str | int | None, exc: ValueError) -> ApiError:
        """422 for a rule's ``ValueError``, keeping the kind a rule names for itself (a
        ``PydanticCustomError``'s ``type``)."""
        return cls.invalid(field, str(exc), getattr(exc, "type", "value_error"))

    @classmethod
    def invalid_items(cls, items: list[dict[str, Any]]) -> ApiError:
        """422 with several FastAPI-style items (``loc``, ``msg``, ``type``)."""
        return cls(422, items[0]["msg"], kind=items[0]["type"], items=items)

    @classmethod
    def not_found(cls, message: str) -> ApiError:
        return cls(404, message)

    @classmethod
    def unavailable(cls, message: str) -> ApiError:
        """503: a backend is down or the deadline passed; the client may retry."""
        return cls(503, f"{message}; retry later")

    def body(self) -> dict[str, Any]:
        """The answer's JSON, in the contract's shape."""
        if self.items is not None:
            return {"detail": self.items}
        return {"detail": self.message}

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(RETRY_AFTER_S)} if self.status in RETRYABLE else {}

    # -- as data, between the services and processes -------------------------------------------
    def to_wire(self) -> ErrorData:
        return ErrorData(
            status=self.status,
            message=self.message,
            field=self.field,
            kind=self.kind,
            items=self.items,
        )

    @classmethod
    def from_wire(cls, data: ErrorData) -> ApiError:
        return cls(data.status, data.message, data.field, data.kind, data.items)


class ErrorData(BaseModel):
    """An ``ApiError`` as data."""

    status: int
    message: str
    field: str | int | None
    kind: str
    items: list[dict[str, Any]] | None


class Reply(BaseModel, Generic[T]):
    """What an internal service's call answers: ``result``, or ``error`` (an ``ApiError`` as
    data), and the service's stage timings. A model, not a dict: BentoML works out a root type's
    media type from its JSON schema on every response (measured: 7% of the runner's time on a
    cheap request). A method declares what its result is (``Reply[list[Analysis]]``), and
    BentoML's client validates the answer as that."""

    result: T | None = None
    error: ErrorData | None = None
    timings: dict[str, float] = {}

    def unwrap(self) -> T:
        """The result; the service's ``ApiError`` raised again in the caller."""
        if self.error is not None:
            raise ApiError.from_wire(self.error)
        return self.result  # type: ignore[return-value] - set whenever error is not


# The stage under which a service records its own time in a reply's timings (the caller
# subtracts it from the round trip: the rest is the hop).
SERVICE_STAGE = "service"


@contextmanager
def replying(context: RequestContext | None = None) -> Iterator[Reply[Any]]:
    """A service call's ``Reply``: the block sets ``reply.result``; an ``ApiError`` raised in it
    becomes ``reply.error``. With the request's ``context``, the reply carries its stages and the
    call's own time."""
    start = time.perf_counter()
    reply: Reply[Any] = Reply()
    try:
        yield reply
    except ApiError as error:
        reply.result, reply.error = None, error.to_wire()
    if context is not None:
        context.add(SERVICE_STAGE, since_ms(start))
        reply.timings = context.ms
