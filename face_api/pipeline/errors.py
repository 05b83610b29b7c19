"""Client errors in the contract's shapes.

A ``RequestError`` is raised anywhere in request handling for input that cannot be served; the
service turns it into FastAPI's 422 body, ``{"detail": [{"loc", "msg", "type"}]}``.
"""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """Invalid input: answered with ``status`` and one FastAPI-style error item."""

    def __init__(
        self, field: str, msg: str, *, type_: str = "value_error", status: int = 422
    ) -> None:
        super().__init__(f"{field}: {msg}")
        self.field = field
        self.msg = msg
        self.type = type_
        self.status = status

    def body(self) -> dict[str, Any]:
        return validation_body([{"loc": ["body", self.field], "msg": self.msg, "type": self.type}])


def validation_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"detail": items}
