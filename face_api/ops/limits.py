"""The API's limits and defaults, each written once: the JSON bodies, their multipart twins,
the settings' bounds and the Python client all take them from here."""

from __future__ import annotations

MAX_RESULTS = 1000  # the contract: maxResults (and maxFaces) at most 1000
DETECT_MAX_RESULTS = 750  # /v1/detect's default maxResults
FACES_MAX_RESULTS = 128  # the default for many faces: multi-*, allFaces, a search's maxFaces
SEARCH_MAX_RESULTS = 5  # a gallery search's matches per probe face
SUBJECT_MAX_CHARS = 256  # an enrolled person's name or id
PAGE_MAX = 1000  # a gallery listing's largest page
PAGE_DEFAULT = 100
# BentoML's own request timeout comes this long after the service's deadline
# (FACE_REQUEST_TIMEOUT_S): only a backstop. A replica's shutdown grace covers both
# (kubernetes/face-api).
BACKSTOP_TIMEOUT_S = 10
