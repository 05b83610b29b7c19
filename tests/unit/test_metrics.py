"""Request metrics are labelled by route template (face_api/http/metrics.py)."""

from __future__ import annotations

from face_api.http.metrics import UNMATCHED, RouteLabels

LABELS = RouteLabels(
    [
        "/v1/detect",
        "/v1/galleries/{gallery}",
        "/v1/galleries/{gallery}/faces/{face_id}",
        "/v1/galleries/{gallery}/subjects/{subject:path}",
    ]
)


def test_a_path_is_labelled_by_its_route_template():
    assert LABELS("/v1/detect") == "/v1/detect"
    assert LABELS("/v1/galleries/staff") == "/v1/galleries/{gallery}"
    assert LABELS("/v1/galleries/staff/faces/abc") == "/v1/galleries/{gallery}/faces/{face_id}"
    # a path parameter takes slashes and line breaks: still one label
    assert (
        LABELS("/v1/galleries/g/subjects/a/b\nc")
        == "/v1/galleries/{gallery}/subjects/{subject:path}"
    )


def test_every_other_path_shares_one_label():
    for path in ("/junk-1", "/v1/detect/", "/v1/galleries/a/b", "/v1/galleries/", "/"):
        assert LABELS(path) == UNMATCHED, path
