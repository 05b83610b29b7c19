"""Galleries of enrolled faces for 1:N search: the Milvus store, the gallery calls on it and the
API workers' client of them, its HTTP routes and schemas, and a typed Python client. Beside the
edge: may use ``http``, ``pipeline`` and ``ops``; nothing below imports it. Its BentoML service
(the one process owning a Milvus Lite store): runners/gallery_service.py."""
