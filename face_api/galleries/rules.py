"""What the galleries accept, checked the same way wherever it arrives: the request models and
routes (so a bad value is a 422 where the client sent it, before any work, and the published
OpenAPI document states the rule) and the store (for every other caller).

Identifiers have one exact shape each (``face_api/ops/limits.py``), checked with ``fullmatch``.
Metadata is plain JSON: an object, at most ``METADATA_MAX_DEPTH`` deep, finite numbers, integers
that fit in 64 bits, valid Unicode text, at most the configured bytes as compact UTF-8 JSON.

A subject is what a person reads: it arrives in Unicode's NFC form at every door (enroll,
verify, the listing's filter, import, erasure), and a name with a character that shows nothing or
changes how its neighbours show (controls, formats such as zero-width and bidirectional marks,
tags, line and paragraph separators, private use, unassigned code points, other
default-ignorable ones), a space other than the plain one, or spaces at either end or two at once,
is refused: its twin without them would look the same. Names that look the same through different
letters (a Cyrillic ``А`` for a Latin ``A``) share a look (``lookalikes.py``): a gallery keeps one
name per look, and erasure goes by the look.

Erasure takes any name: deleting or listing a subject takes whatever an earlier version may have
enrolled (control characters, slashes), since the store never splices a name into a query.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from face_api.galleries import lookalikes
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
VISIBLE_RULE = (
    "subjects hold only characters that show (no zero-width, bidirectional, tag, format, "
    "private-use or unassigned characters, no line or paragraph separators), and single plain "
    "spaces between words"
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
    """``value`` in NFC, if it is a name enrollment takes; else ``ValueError`` saying why."""
    name = unicodedata.normalize("NFC", value)
    if len(name) > SUBJECT_MAX_CHARS:
        raise ValueError(SUBJECT_RULE)
    _check_subject_text(name)
    if any(_hidden(c) for c in name) or name != name.strip(" ") or "  " in name:
        # its own kind: no pattern in the published document (ECMA-262) can state this rule
        raise PydanticCustomError("value_error.subject", VISIBLE_RULE)
    return name


def _hidden(char: str) -> bool:
    """Shows nothing, or changes how its neighbours show, or is a space but the plain one."""
    if char == " ":
        return False
    return (
        lookalikes.is_invisible(char)
        or unicodedata.category(char) in ("Co", "Cn", "Zs")
        or char.isspace()
    )


def subject_query(value: str) -> str:
    """A subject as verify and the listing's filter take it: in NFC (what enrollment stored)."""
    return unicodedata.normalize("NFC", value)


def documented(pattern: str, max_length: int, description: str) -> dict[str, Any]:
    """What the OpenAPI document says of an identifier (the check itself is ``fullmatch``, with
    a message that says the rule in words rather than quoting the pattern)."""
    return {"pattern": pattern, "minLength": 1, "maxLength": max_length, "description": description}


GALLERY_DOC = documented(GALLERY_NAME_PATTERN, GALLERY_NAME_MAX_CHARS, GALLERY_RULE)
SUBJECT_DOC = documented(
    SUBJECT_PATTERN,
    SUBJECT_MAX_CHARS,
    f"the person's name or id, taken in Unicode's NFC form: {SUBJECT_RULE}; {VISIBLE_RULE}",
)
FACE_ID_DOC = documented(FACE_ID_PATTERN, 32, FACE_ID_RULE)

# A subject as enrollment takes it (request bodies and forms).
Subject = Annotated[str, AfterValidator(check_subject), Field(json_schema_extra=SUBJECT_DOC)]


def check_metadata(value: Any, max_bytes: int | None = None) -> Any:
    """``value`` if it is metadata the store can keep (None is none), else a
    ``value_error.metadata`` (a ``ValueError``) saying why. Walked without recursion: a client
    chooses the depth."""
    if value is None:  # none given
        return None
    if not isinstance(value, dict):
        raise _metadata_error("metadata must be a JSON object")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > METADATA_MAX_DEPTH:
                raise _metadata_error(
                    f"metadata is nested more than {METADATA_MAX_DEPTH} levels deep"
                )
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        raise _metadata_error("metadata keys must be text")
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
                raise _metadata_error("metadata integers must fit in 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _metadata_error("metadata numbers must be finite (no NaN or Infinity)")
        else:
            raise _metadata_error("metadata must be plain JSON")
    if max_bytes is not None:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > max_bytes:
            raise _metadata_error(
                f"metadata is {size} bytes as JSON, over the limit of {max_bytes}"
            )
    return value


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's \ud800 makes
        raise _metadata_error("metadata text must be valid Unicode (no lone surrogates)") from None


def _metadata_error(message: str) -> PydanticCustomError:
    # Its own kind: no JSON Schema states these rules for a free-form object's values.
    return PydanticCustomError("value_error.metadata", message)
