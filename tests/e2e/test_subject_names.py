"""Subjects as people read them, through a real server: every door takes a name in NFC and
refuses one with characters that show nothing or turn its neighbours around, a gallery keeps one
name per look, and erasure by the name a person sees leaves no face of that name. A
property-based fuzz of names (Unicode categories, normal forms, invisible and look-alike
characters) holds erasure to it."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from face_api.galleries.client import GalleryClient
from face_api.galleries.lookalikes import look
from face_api.pipeline.features import encode_feature
from tests.server import API_KEY

FEATURE = encode_feature(np.random.default_rng(3).standard_normal(512))


def enroll(api, gallery: str, subject: str):
    return api.post(f"/v1/galleries/{gallery}/faces", json={"subject": subject, "feature": FEATURE})


def erase(api, gallery: str, subject: str):
    return api.delete(f"/v1/galleries/{gallery}/subjects/{quote(subject, safe='')}")


def subjects(api, gallery: str) -> list[str]:
    response = api.get(f"/v1/galleries/{gallery}/subjects", params={"limit": 1000})
    if response.status_code == 404:
        return []
    return [s["subject"] for s in response.json()["subjects"]]


@pytest.mark.parametrize(
    "name",
    [
        "Alice\u200b",  # a zero-width space: a twin of "Alice"
        "\u202eecilA",  # a right-to-left override
        "Alice\U000e0041",  # a tag character
        "Alice\u2028",  # a line separator
        "Ali\ue000ce",  # private use
        "Alice ",  # a space at the end
        "Al  ice",
        "Al\u00a0ice",  # a no-break space
    ],
)
def test_names_with_what_shows_nothing_are_refused_at_every_door(api, name):
    response = enroll(api, "doors", name)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", "subject"] and item["type"] == "value_error.subject"
    form = api.post(
        "/v1/file/galleries/doors/faces",
        data={"subject": name},
        files={"image": ("a.jpg", b"\xff\xd8\xff")},
    )
    assert form.status_code == 422 and form.json()["detail"][0]["loc"] == ["body", "subject"]


def test_a_name_is_kept_in_nfc_and_erased_by_either_form(api):
    assert enroll(api, "nfc", "Jose\u0301").json()["subject"] == "Jos\u00e9"
    assert subjects(api, "nfc") == ["Jos\u00e9"]
    verify = api.post(
        "/v1/galleries/nfc/verify", json={"subject": "Jose\u0301", "feature": FEATURE}
    )
    assert verify.status_code == 200 and verify.json()["match"]
    listed = api.get("/v1/galleries/nfc/faces", params={"subject": "Jose\u0301"})
    assert listed.json()["total"] == 1
    assert erase(api, "nfc", "Jos\u00e9").json() == {"deleted": 1}


def test_a_look_alike_of_an_enrolled_name_is_a_conflict(api):
    assert enroll(api, "twins", "Alice").status_code == 200
    for twin in ("\u0410lice", "A\u217cice"):  # a Cyrillic A; a Roman numeral small l
        response = enroll(api, "twins", twin)
        assert response.status_code == 409, response.text
        assert "'Alice'" in response.json()["detail"]
    assert erase(api, "twins", "\u0410lice").json() == {"deleted": 1}  # what a person reads
    assert subjects(api, "twins") == []


# Names as clients write them: letters of several scripts, marks, digits, symbols, spaces, and
# the characters that show nothing; each sometimes in NFD.
CHARACTERS = st.characters(
    codec="utf-8",
    categories=["Lu", "Ll", "Lo", "Mn", "Nd", "So", "Zs", "Cf", "Pd", "Po"],
    exclude_characters="/\\",
)
NAMES = st.builds(
    lambda text, nfd: unicodedata.normalize("NFD", text) if nfd else text,
    st.text(CHARACTERS, min_size=1, max_size=12),
    st.booleans(),
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=NAMES, spelled=st.sampled_from(["nfc", "nfd", "as sent"]))
def test_erasure_by_the_visible_name_leaves_no_face_of_that_name(api, name, spelled):
    gallery = "fuzzed-names"
    assert enroll(api, gallery, "bystander").status_code == 200
    enrolled = enroll(api, gallery, name)
    assert enrolled.status_code in (200, 409, 422), enrolled.text
    if enrolled.status_code == 200:
        stored = enrolled.json()["subject"]
        assert stored == unicodedata.normalize("NFC", name)  # kept in NFC
        # The same name as a person would type it back: in NFC, NFD, or as first sent.
        given_back = {
            "nfc": stored,
            "nfd": unicodedata.normalize("NFD", stored),
            "as sent": name,
        }[spelled]
        erased = erase(api, gallery, given_back)
        assert erased.status_code == 200 and erased.json()["deleted"] >= 1, erased.text
        assert [s for s in subjects(api, gallery) if look(s) == look(name)] == []
    elif enrolled.status_code == 409:  # a look-alike of the bystander
        assert look(name) == look("bystander")
    if look(name) != look("bystander"):
        assert "bystander" in subjects(api, gallery)  # nothing else was erased
    assert api.delete(f"/v1/galleries/{gallery}", params={"confirm": gallery}).status_code == 200


def test_the_python_client_erases_by_the_visible_name_too(server, api):
    assert enroll(api, "client-names", "Zoe\u0308").status_code == 200
    with GalleryClient(server.url, API_KEY) as client:
        assert client.delete_subject("client-names", "Zo\u00eb") == 1
        assert client.delete_gallery("client-names") == 0  # its one subject already erased
