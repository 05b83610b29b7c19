"""The API's limits and defaults, each written once: the JSON bodies, their multipart twins,
the settings' bounds and the Python client all take them from here."""

from __future__ import annotations

MAX_RESULTS = 1000  # the contract: maxResults (and maxFaces) at most 1000
DETECT_MAX_RESULTS = 750  # /v1/detect's default maxResults
FACES_MAX_RESULTS = 128  # the default for many faces: multi-*, allFaces, a search's maxFaces
SEARCH_MAX_RESULTS = 5  # a gallery search's matches per probe face
# A search answer's matches at most: probe faces (maxFaces with allFaces, else 1) x maxResults,
# checked before any work. Each match carries its face's metadata (FACE_GALLERY_METADATA_MAX_BYTES),
# so an answer is at most about 1,000 x 17 KiB = 17 MiB at the default cap; a search of 1,000
# faces x 1,000 results over 4 KB metadata had answered 208 MiB.
SEARCH_MAX_MATCHES = 1000
SUBJECT_MAX_CHARS = 256  # an enrolled person's name or id
# An uploaded file's name: the file system's 255 bytes, less the temporary file's own prefix.
FILENAME_MAX_BYTES = 200
PAGE_MAX = 1000  # a gallery listing's largest page
PAGE_DEFAULT = 100

# Identifiers, each with one exact shape: patterns in the dialect that JSON Schema (ECMA-262),
# pydantic (Rust's regex) and Python's ``re`` (with ``fullmatch``) all read the same way, anchored
# so that no trailing line break slips past ``$``.
# A gallery: letters, digits, '_', '-', '.', a letter or digit first (so never ``..``).
GALLERY_NAME_MAX_CHARS = 64
GALLERY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# A subject: any text but control characters (C0, DEL, C1) and slashes, and not "." or "..". A
# subject is a path segment in the DELETE that erases it, and clients resolve dot segments and
# unescaped slashes away: DELETE .../subjects/.. (or ../../x) would reach a gallery instead.
_TEXT = r"\u0000-\u001f\u007f-\u009f/\\"
SUBJECT_PATTERN = rf"^([^{_TEXT}.][^{_TEXT}]*|\.[^{_TEXT}.][^{_TEXT}]*|\.\.[^{_TEXT}]+)$"
# A face id, as the store makes them: 32 lowercase hex digits (a UUID4's hex).
FACE_ID_PATTERN = r"^[0-9a-f]{32}$"
# Enrolled metadata: a JSON object at most this deep (an object in an object is depth 2).
METADATA_MAX_DEPTH = 16

# BentoML's own request timeout comes this long after the service's deadline
# (FACE_REQUEST_TIMEOUT_S): only a backstop. A replica's shutdown grace covers both
# (kubernetes/face-api).
BACKSTOP_TIMEOUT_S = 10
