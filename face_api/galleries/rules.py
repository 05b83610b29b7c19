"""What the galleries accept, checked the same way wherever it arrives: the request models and
routes (so a bad value is a 422 where the client sent it, before any work, and the published
OpenAPI document states the rule) and the store (for every other caller).

Identifiers have one exact shape each (``face_api/ops/limits.py``), checked with ``fullmatch``.
Metadata is plain JSON: an object, at most ``METADATA_MAX_DEPTH`` deep, finite numbers, integers
that fit in 64 bits, valid Unicode text, at most the configured bytes as compact UTF-8 JSON.

Erasure takes any name: deleting or listing a subject takes whatever an earlier version may have
enrolled (control characters, slashes), since the store never splices a name into a query.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from face_api.ops.limits import (
    FACE_ID_PATTERN,
    GALLERY_NAME_MAX_CHARS,
    GALLERY_NAME_PATTERN,
    METADATA_MAX_DEPTH,
    SUBJECT_MAX_CHARS,
    SUBJECT_PATTERN,
)

GALLERY_RULE = (
    f"gallery names are 1-{GALLERY_NAME_MAX_CHARS} characters of letters, digits, '_', '-' and "
    "'.', starting with a letter or a digit"
)
SUBJECT_RULE = (
    f"subjects are 1-{SUBJECT_MAX_CHARS} characters, without control characters, '/' or '\\', "
    "and not '.' or '..'"
)
FACE_ID_RULE = "face ids are 32 lowercase hexadecimal digits, as enroll answers them"


def _fullmatch(pattern: str, rule: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(rule)
        return value

    return check


check_gallery = _fullmatch(GALLERY_NAME_PATTERN, GALLERY_RULE)
check_face_id = _fullmatch(FACE_ID_PATTERN, FACE_ID_RULE)
_check_subject_text = _fullmatch(SUBJECT_PATTERN, SUBJECT_RULE)


def check_subject(value: str) -> str:
    if len(value) > SUBJECT_MAX_CHARS:
        raise ValueError(SUBJECT_RULE)
    return _check_subject_text(value)


def documented(pattern: str, max_length: int, description: str) -> dict[str, Any]:
    """What the OpenAPI document says of an identifier (the check itself is ``fullmatch``, with
    a message that says the rule in words rather than quoting the pattern)."""
    return {"pattern": pattern, "minLength": 1, "maxLength": max_length, "description": description}


GALLERY_DOC = documented(GALLERY_NAME_PATTERN, GALLERY_NAME_MAX_CHARS, GALLERY_RULE)
SUBJECT_DOC = documented(
    SUBJECT_PATTERN, SUBJECT_MAX_CHARS, f"the person's name or id: {SUBJECT_RULE}"
)
FACE_ID_DOC = documented(FACE_ID_PATTERN, 32, FACE_ID_RULE)

# A subject as enrollment takes it (request bodies and forms).
Subject = Annotated[str, AfterValidator(check_subject), Field(json_schema_extra=SUBJECT_DOC)]


def check_metadata(value: Any, max_bytes: int | None = None) -> Any:
    """``value`` if it is metadata the store can keep (None is none), else ``ValueError`` saying
    why. Walked without recursion: a client chooses the depth."""
    if value is None:  # none given
        return None
    if not isinstance(value, dict):
        raise ValueError("metadata must be a JSON object")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > METADATA_MAX_DEPTH:
                raise ValueError(f"metadata is nested more than {METADATA_MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        raise ValueError("metadata keys must be text")
                    _check_text(key)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not -(2**63) <= item < 2**63:
                raise ValueError("metadata integers must fit in 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("metadata numbers must be finite (no NaN or Infinity)")
        else:
            raise ValueError("metadata must be plain JSON")
    if max_bytes is not None:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > max_bytes:
            raise ValueError(f"metadata is {size} bytes as JSON, over the limit of {max_bytes}")
    return value


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's \ud800 makes
        raise ValueError("metadata text must be valid Unicode (no lone surrogates)") from None
