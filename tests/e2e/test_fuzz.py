"""Schemathesis against the service's own OpenAPI schema: no 5xx, every response as documented.

Hundreds of generated requests (valid and invalid bodies, JSON and multipart) over real HTTP to
a real server, each answer run through all of schemathesis's checks: status code documented, body
matching its schema, content type, no server error, invalid data refused, and valid data
accepted. A request valid by the document may still be refused for what no schema can say of a
value: that its base64 bytes are an image, hold a face, are a crop of the recognizer's size, or a
feature of the pack's length (``CONTENT_KINDS``). A refusal for anything else (a gallery name,
an empty image, both or neither of image and feature) fails: the document must state the rule.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.helpers import JSON_POSTS, POSTS
from tests.paths import IDENTITIES
from tests.server import API_KEY

GETS = ["/v1/health", "/v1/info/server", "/v1/info/model", "/v1/info/model/{model_name}"]
GALLERY_OPERATIONS = [
    ("POST", "/v1/galleries/{gallery}/faces"),
    ("POST", "/v1/galleries/{gallery}/search"),
    ("POST", "/v1/galleries/{gallery}/verify"),
    ("POST", "/v1/file/galleries/{gallery}/faces"),
    ("POST", "/v1/file/galleries/{gallery}/search"),
    ("POST", "/v1/file/galleries/{gallery}/verify"),
    ("GET", "/v1/galleries"),
    ("GET", "/v1/galleries/{gallery}/subjects"),
    ("GET", "/v1/galleries/{gallery}/faces"),
    ("DELETE", "/v1/galleries/{gallery}/faces/{face_id}"),
    ("DELETE", "/v1/galleries/{gallery}/subjects/{subject}"),
    ("DELETE", "/v1/galleries/{gallery}"),
]
OPERATIONS = [("POST", p) for p in POSTS] + [("GET", p) for p in GETS] + GALLERY_OPERATIONS
# The 422 kinds for what the bytes of a well-formed value turn out to be.
CONTENT_KINDS = {
    "value_error.base64",
    "value_error.image",
    "value_error.empty",  # base64 that decodes to zero bytes
    "value_error.image_too_large",
    "value_error.no_face",
    "value_error.quality",
    "value_error.crop_size",
    "value_error.feature",
    "value_error.json",  # a form's text that is not the JSON its contentMediaType says
    "value_error.image_format",  # bytes of a format the service does not take
    "value_error.filename",  # an upload's file name, which no schema describes
    # What no schema states between two values: a search's maxResults x maxFaces (its answer's
    # bound), and a gallery drop's confirm, which must repeat the path's gallery.
    "value_error.answer_size",
    "value_error.confirm",
    # A subject's characters that show nothing: Unicode categories, which no ECMA-262 pattern
    # without property escapes states.
    "value_error.subject",
    # A metadata object's values (64-bit integers, finite numbers, valid Unicode, its size as
    # JSON): no schema states them for a free-form object.
    "value_error.metadata",
}
EXAMPLES_PER_OPERATION = 30  # 27 operations with parameters: 810 requests
# Reproducible: the same examples every run, none remembered between runs.
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def refused_for_content(response) -> bool:
    if response.status_code != 422:
        return False
    detail = response.json()["detail"]
    return all(item["type"] in CONTENT_KINDS for item in detail)


@pytest.fixture(scope="module")
def published_schema(server):
    # schemathesis's own pytest loader (`from_fixture`) does not work with pytest 9, so the
    # strategies are driven with hypothesis's `given` here.
    return schemathesis.openapi.from_url(f"{server.url}/docs.json")


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_generated_requests_get_documented_answers(published_schema, server, method, path):
    operation = published_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    sent: list = []

    @given(case=cases)
    @FUZZ_SETTINGS
    def check(case):
        sent.append(case)
        response = case.call(base_url=server.url, headers={"x-api-key": API_KEY}, timeout=60)
        excluded = []
        if refused_for_content(response):
            excluded.append(positive_data_acceptance)
        # A form carries text: a "negative" value schemathesis makes for a form field (an empty
        # array, sent as no part at all; 0 for a boolean, sent as the text "0") reaches the
        # server as an absent or valid field, which it rightly accepts.
        if "/file/" in path:
            excluded.append(negative_data_rejection)
        case.validate_response(response, excluded_checks=excluded)
        assert response.status_code < 500

    check()
    if method != "GET" or "{" in path:  # a GET without parameters has one possible request
        assert len(sent) == EXAMPLES_PER_OPERATION


def test_the_schema_documents_the_contract(server):
    spec = httpx.get(f"{server.url}/docs.json").json()
    posts = {p: item["post"] for p, item in spec["paths"].items() if "post" in item}
    galleries = {p for m, p in GALLERY_OPERATIONS if m == "POST"}
    assert sorted(p for p in posts if p.startswith("/v1/") and p not in galleries) == sorted(POSTS)
    for path in POSTS:
        operation = posts[path]
        assert set(operation["responses"]) == {"200", "401", "413", "422", "429", "503"}, path
        assert operation["security"] == [{"ApiKey": []}, {"Bearer": []}]
        assert operation["description"], path
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    body = posts["/v1/detect"]["requestBody"]
    assert body["required"] is True
    reference = body["content"]["application/json"]["schema"]["$ref"]
    detect = spec["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert set(detect["properties"]) == {
        "seq",
        "maxResults",
        "detectSortType",
        "image",
        "returnQuality",
    }
    assert detect["properties"]["maxResults"]["maximum"] == 1000
    for path in GETS:
        assert "200" in spec["paths"][path]["get"]["responses"]
    assert "404" in spec["paths"]["/v1/info/model/{model_name}"]["get"]["responses"]
    assert "503" in spec["paths"]["/v1/health"]["get"]["responses"]


# The schema describes each route's own content type only; clients also send the wrong one.
FORM_FIELDS = st.sampled_from(["image", "image1", "image2", "subject", "maxResults", "x"])
WRONG_BODIES = st.one_of(
    st.builds(
        lambda fields: {"files": fields},
        st.dictionaries(
            FORM_FIELDS,
            st.tuples(st.just("photo.jpg"), st.one_of(st.binary(max_size=512), st.just(b""))),
            min_size=1,
            max_size=3,
        ),
    ),
    st.builds(
        lambda fields: {"data": fields},
        st.dictionaries(FORM_FIELDS, st.text(max_size=64), min_size=1, max_size=3),
    ),
    st.builds(
        lambda body, content_type: {
            "content": body,
            "headers": {} if content_type is None else {"content-type": content_type},
        },
        st.one_of(st.binary(max_size=2048), st.just(IDENTITIES[0].read_bytes())),
        st.sampled_from(
            [
                None,
                "application/json",
                "application/json; charset=latin-1",
                "text/plain",
                "application/octet-stream",
                "image/jpeg",
                "multipart/form-data",
                "multipart/form-data; boundary=xyz",
                "application/x-www-form-urlencoded",
            ]
        ),
    ),
)


@pytest.mark.parametrize("path", JSON_POSTS)
def test_forms_and_bytes_sent_to_json_routes_get_4xx_in_the_contract_shape(server, path):
    @given(request=WRONG_BODIES)
    @FUZZ_SETTINGS
    def check(request):
        body = dict(request)
        headers = {"x-api-key": API_KEY, **body.pop("headers", {})}
        response = httpx.post(f"{server.url}{path}", **body, headers=headers, timeout=60)
        assert 400 <= response.status_code < 500, (request, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, list) and detail, detail
        assert all(item["loc"][0] == "body" and item["msg"] for item in detail)

    check()
