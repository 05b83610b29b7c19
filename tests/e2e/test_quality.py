"""Per-face quality and enrollment's quality bar through a real server: the grade against its
outcome (the cosine of a degraded face's embedding to the same frame's clean one), and group
photos enrolled face by face."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from benchmarks.probes.degradations import DEGRADATIONS
from face_api.galleries.client import FaceApiError, GalleryClient
from face_api.galleries.schemas import EnrollResponse
from tests.helpers import b64
from tests.paths import CROWD, IDENTITIES
from tests.server import API_KEY

# A few of the probe's degradations (benchmarks/probes/degradations.py), mild to ruinous.
PROBED = {
    d.name: d
    for d in DEGRADATIONS
    if d.name
    in (
        "jpeg q 3",
        "motion blur 25 px horizontal",
        "gaussian blur sigma 2",
        "gaussian blur sigma 5",
        "low light x0.15",
        "small face 32 px",
    )
}
GROUP = CROWD[2]  # a crowd of 53 faces, 30 to 47 px: about half pass AUTO (26 here)


def png_b64(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", image)  # lossless: the degradation alone changes the pixels
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def mirrored(image: np.ndarray) -> np.ndarray:
    return cv2.flip(image, 1)


def turned(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 40, 1.0)
    return cv2.warpAffine(image, turn, (width, height))


def box_row(detect: dict) -> np.ndarray:
    """A face_detect as the pipeline's row: box, score, landmarks."""
    box = detect["boundingBox"]
    points = [v for p in detect["landmarks"] for v in (p["x"], p["y"])]
    corners = [box["left"], box["top"], box["right"], box["bottom"]]
    return np.array([*corners, detect["confidence"], *points], np.float32)


@pytest.fixture(scope="module")
def graded(api) -> dict[str, dict[str, dict | None]]:
    """Per photo, the largest face of the clean frame and of each variant, with its unit
    embedding under ``embedding`` (None where no face was found)."""

    def embedded(image: str) -> dict | None:
        body = {"image": image, "returnQuality": True}
        answer = api.post("/v1/embeddings", json=body).json()
        if not answer["face_detect"]["processed"]:
            return None
        return {**answer["face_detect"], "embedding": np.array(answer["embeddings"])}

    out: dict[str, dict[str, dict | None]] = {}
    for photo in IDENTITIES:
        image = cv2.imread(str(photo))
        clean = embedded(b64(photo))
        row = box_row(clean)
        out[photo.name] = {"clean": clean}
        for name, degradation in PROBED.items():
            ruined = degradation.apply(image, row, degradation.rng(photo.name))
            out[photo.name][name] = embedded(png_b64(ruined))
        out[photo.name]["mirrored"] = embedded(png_b64(mirrored(image)))
        out[photo.name]["turned 40 degrees"] = embedded(png_b64(turned(image)))
    return out


def test_without_return_quality_answers_have_no_quality(api):
    image = b64(CROWD[1])
    plain = api.post("/v1/detect", json={"image": image}).json()
    asked = api.post("/v1/detect", json={"image": image, "returnQuality": True}).json()
    assert all("quality" not in face for face in plain["faces"])
    assert len(asked["faces"]) == len(plain["faces"]) > 1
    for face in asked["faces"]:
        assert face.pop("quality")["embeddingNorm"] > 0  # detect embeds each face to judge it
    assert asked == plain  # the same faces, boxes and landmarks, only quality added
    feature = api.post("/v1/feature", json={"image": b64(IDENTITIES[0])}).json()
    assert "quality" not in feature["face_detect"]


def largest_face(api, image: str, path: str = "/v1/detect") -> dict:
    body = {"image": image, "returnQuality": True}
    if path == "/v1/detect":
        body["maxResults"] = 1
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    return answer["faces"][0] if path == "/v1/detect" else answer["face_detect"]


def test_quality_is_the_same_on_every_route_json_and_multipart(api):
    photo = IDENTITIES[0]
    detected = largest_face(api, b64(photo))["quality"]
    keys = {
        "grade",
        "reasons",
        "recognizability",
        "faceSize",
        "interocularDistance",
        "yaw",
        "pitch",
        "roll",
        "sharpness",
        "brightness",
        "motionBlur",
        "detectorScore",
        "embeddingNorm",
    }
    assert set(detected) == keys
    assert 0 <= detected["recognizability"] <= 1 and detected["embeddingNorm"] > 0
    for path in ("/v1/feature", "/v1/embeddings"):
        quality = largest_face(api, b64(photo), path)["quality"]
        for key in ("recognizability", "embeddingNorm", "sharpness", "motionBlur"):
            assert quality[key] == pytest.approx(detected[key], abs=2e-3), (path, key)
    for path in ("/v1/file/detect", "/v1/file/feature", "/v1/file/embeddings"):
        files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
        answer = api.post(path, files=files, data={"returnQuality": "true"}).json()
        face = answer["faces"][0] if "faces" in answer else answer["face_detect"]
        assert face["quality"]["grade"] == detected["grade"], path
        assert face["quality"]["reasons"] == detected["reasons"], path


def test_each_measure_moves_the_right_way_on_every_photo(graded):
    for name, faces in graded.items():
        clean = faces["clean"]["quality"]
        ruined = {v: f["quality"] for v, f in faces.items() if f is not None}
        for blurred in ("gaussian blur sigma 2", "gaussian blur sigma 5"):
            assert ruined[blurred]["sharpness"] < clean["sharpness"], (name, blurred)
        sigma5 = ruined["gaussian blur sigma 5"]["recognizability"]
        assert sigma5 < clean["recognizability"], name
        if "low light x0.15" in ruined:  # one frame's face is lost in the dark
            assert ruined["low light x0.15"]["brightness"] < clean["brightness"], name
        assert ruined["small face 32 px"]["faceSize"] < clean["faceSize"], name
        mirror = ruined["mirrored"]["yaw"]
        if abs(clean["yaw"]) >= 5:  # a frontal face's yaw is noise around 0
            assert mirror * clean["yaw"] < 0, (name, clean["yaw"], mirror)
    smear = [
        (
            f["motion blur 25 px horizontal"]["quality"]["motionBlur"],
            f["clean"]["quality"]["motionBlur"],
        )
        for f in graded.values()
    ]
    # 28 of 33 read more smeared: a face whose own edges run mostly one way can read less so
    # when smeared across them. The cause MOTION_BLUR is named from 0.40.
    smeared = [blurred > clean for blurred, clean in smear]
    assert sum(smeared) >= 0.75 * len(smeared), sum(smeared)
    assert np.median([b for b, _ in smear]) > 0.40 > 0.25 > np.median([c for _, c in smear])


def test_a_40_degree_turn_gives_a_roll_within_5_degrees_of_40(graded):
    """On the frames turned at most 30 degrees: in a profile (one eye hidden) the detector's
    eye landmarks do not keep their places when the photo turns (measured: 5 of the 33 frames,
    all turned 45-64 degrees, or blurry at the eye)."""
    frontal = {n: f for n, f in graded.items() if abs(f["clean"]["quality"]["yaw"]) <= 30}
    assert len(frontal) >= 20
    for name, faces in frontal.items():
        turn = faces["turned 40 degrees"]["quality"]["roll"] - faces["clean"]["quality"]["roll"]
        # OpenCV turns counter-clockwise: the eye line's angle in image coordinates falls by 40.
        assert abs(abs(turn) - 40) <= 5, (name, turn)


def test_the_grade_is_calibrated_on_whether_the_face_keeps_its_identity(graded):
    """The outcome: the cosine of each degraded face's embedding to its clean frame's. No face
    below 0.5 is graded high, every clean frame is enrollable (medium or high), and the low
    grade (what AUTO refuses) takes most of the faces below 0.5 and few of those from 0.7."""
    lost, kept = [], []
    for faces in graded.values():
        clean = faces["clean"]
        assert clean["quality"]["grade"] in ("medium", "high"), clean["quality"]
        for variant, face in faces.items():
            if variant == "clean" or face is None:
                continue
            cosine = float(face["embedding"] @ clean["embedding"])
            grade = face["quality"]["grade"]
            assert not (cosine < 0.5 and grade == "high"), (variant, cosine, face["quality"])
            if cosine < 0.5:
                lost.append(grade == "low")
            elif cosine >= 0.7:
                kept.append(grade != "low")
    assert len(lost) >= 50 and len(kept) >= 100, (len(lost), len(kept))
    assert np.mean(lost) >= 0.85, (np.mean(lost), len(lost))
    assert np.mean(kept) >= 0.85, (np.mean(kept), len(kept))


def test_jpeg_at_quality_3_is_graded_low_wherever_a_face_is_found(graded):
    found = [f["jpeg q 3"] for f in graded.values() if f["jpeg q 3"] is not None]
    assert len(found) >= 10
    for face in found:
        assert face["quality"]["grade"] == "low", face["quality"]
        assert "LOW_RECOGNIZABILITY" in face["quality"]["reasons"], face["quality"]


def enroll(api, gallery: str, image: str, **fields) -> object:
    body = {"subject": "someone", "image": image, **fields}
    return api.post(f"/v1/galleries/{gallery}/faces", json=body)


def test_auto_enrolls_every_clean_frame_and_refuses_the_ruined_ones(api):
    for photo in IDENTITIES:
        answer = enroll(api, "quality-clean", b64(photo))
        assert answer.status_code == 200, (photo.name, answer.text)
        assert answer.json()["unindexedFaces"] == []
    refused: dict[str, int] = {}
    for name in ("jpeg q 3", "motion blur 25 px horizontal"):
        refused[name] = 0
        for photo in IDENTITIES:
            image = cv2.imread(str(photo))
            row = box_row(largest_face(api, b64(photo)))
            ruined = PROBED[name].apply(image, row, PROBED[name].rng(photo.name))
            answer = enroll(api, "quality-ruined", png_b64(ruined))
            if answer.status_code == 200:
                continue
            assert answer.status_code == 422, answer.text
            (error,) = answer.json()["detail"]
            assert error["loc"] == ["body", "image"]
            if error["type"] == "value_error.quality":
                assert error["msg"].startswith("its face is below the AUTO quality bar: "), error
                assert "LOW_RECOGNIZABILITY" in error["msg"], error
            else:  # JPEG's blocks hide some faces from the detector altogether
                assert error["type"] == "value_error.no_face", error
            refused[name] += 1
    # Before (issue 27): 19 of the 20 JPEG faces found and 27 of 33 blurred frames enrolled.
    assert refused["jpeg q 3"] == len(IDENTITIES), refused
    assert refused["motion blur 25 px horizontal"] >= 18, refused
    api.delete("/v1/galleries/quality-clean", params={"confirm": "quality-clean"})
    api.delete("/v1/galleries/quality-ruined", params={"confirm": "quality-ruined"})


def test_each_quality_filter_sets_its_own_bar(api):
    photo = IDENTITIES[0]
    image = cv2.imread(str(photo))
    blurred = png_b64(PROBED["gaussian blur sigma 5"].apply(image, None, None))
    assert largest_face(api, blurred)["quality"]["grade"] == "low"
    assert enroll(api, "quality-bars", blurred, qualityFilter="NONE").status_code == 200
    assert enroll(api, "quality-bars", blurred, qualityFilter="LOW").status_code == 200
    refused = enroll(api, "quality-bars", blurred, qualityFilter="MEDIUM")
    assert refused.status_code == 422 and "LOW_RECOGNIZABILITY" in refused.text
    files = {"image": ("blurred.png", base64.b64decode(blurred), "image/png")}
    form = {"subject": "someone", "qualityFilter": "AUTO"}
    refused = api.post("/v1/file/galleries/quality-bars/faces", files=files, data=form)
    assert refused.status_code == 422 and "LOW_RECOGNIZABILITY" in refused.text
    clean = largest_face(api, b64(photo))
    status = enroll(api, "quality-bars", b64(photo), qualityFilter="HIGH").status_code
    assert status == (200 if clean["quality"]["grade"] == "high" else 422)
    wrong = enroll(api, "quality-bars", b64(photo), qualityFilter="STRICT")
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"][-1] == "qualityFilter"
    api.delete("/v1/galleries/quality-bars", params={"confirm": "quality-bars"})


# -- group photos: the faces that pass are enrolled, the others listed -----------------------------
@pytest.fixture(scope="module")
def group(api) -> list[dict]:
    """The group photo's faces as /v1/detect grades them, largest first."""
    body = {"image": b64(GROUP), "maxResults": 128, "returnQuality": True}
    faces = api.post("/v1/detect", json=body).json()["faces"]
    assert len(faces) >= 50
    return faces


def expected_split(faces: list[dict]) -> tuple[list[int], list[int]]:
    """Positions (1-based, largest first) AUTO enrolls, and those it leaves out."""
    passing = [i + 1 for i, f in enumerate(faces) if f["quality"]["grade"] != "low"]
    return passing, [i + 1 for i, f in enumerate(faces) if f["quality"]["grade"] == "low"]


def check_split(answer: dict, faces: list[dict]) -> None:
    passing, left_out = expected_split(faces)
    assert passing and left_out, (passing, left_out)  # the photo has both
    assert len(answer["faces"]) == len(passing)
    enrolled_boxes = [f["face_detect"]["boundingBox"] for f in answer["faces"]]
    assert enrolled_boxes == [faces[p - 1]["boundingBox"] for p in passing]
    assert all("quality" not in f["face_detect"] for f in answer["faces"])  # as before
    assert [u["position"] for u in answer["unindexedFaces"]] == left_out
    for unindexed in answer["unindexedFaces"]:
        face = faces[unindexed["position"] - 1]
        assert unindexed["face_detect"] == face  # box, landmarks, score and quality
        # AUTO refuses a face for its reasons graded low, which come first among its reasons
        reasons = face["quality"]["reasons"]
        assert unindexed["reasons"] and unindexed["reasons"] == reasons[: len(unindexed["reasons"])]


def test_all_faces_enrolls_the_faces_that_pass_and_lists_the_others(api, group):
    body = {"subject": "crowd", "image": b64(GROUP), "allFaces": True, "maxResults": 128}
    answer = api.post("/v1/galleries/quality-group/faces", json=body)
    assert answer.status_code == 200, answer.text
    check_split(answer.json(), group)
    listed = api.get("/v1/galleries/quality-group/faces", params={"limit": 500}).json()
    assert listed["total"] == len(expected_split(group)[0])

    files = {"image": (GROUP.name, GROUP.read_bytes(), "image/jpeg")}
    form = {"subject": "crowd", "allFaces": "true", "maxResults": "128"}
    twin = api.post("/v1/file/galleries/quality-group/faces", files=files, data=form)
    assert twin.status_code == 200, twin.text
    check_split(twin.json(), group)

    everyone = dict(body, qualityFilter="NONE")
    answer = api.post("/v1/galleries/quality-group/faces", json=everyone).json()
    assert len(answer["faces"]) == len(group) and answer["unindexedFaces"] == []
    api.delete("/v1/galleries/quality-group", params={"confirm": "quality-group"})


def small_group() -> np.ndarray:
    """The group photo at a fifth of its size: 38 faces found, none of them 10 px."""
    image = cv2.imread(str(GROUP))
    return cv2.resize(image, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)


def test_all_faces_answers_422_only_when_no_face_passes(api):
    body = {"subject": "crowd", "image": png_b64(small_group()), "allFaces": True}
    refused = api.post("/v1/galleries/quality-none/faces", json=body)
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "image"] and error["type"] == "value_error.quality"
    message = error["msg"]
    assert message.startswith("none of its ") and " faces clears the AUTO quality bar: " in message
    assert "face 1 (by size): SMALL_FACE" in message and message.endswith(" more"), message
    assert api.get("/v1/galleries/quality-none/faces").status_code == 404  # nothing enrolled
    # Without allFaces only the largest face is judged: the single face's 422, as before.
    single = api.post("/v1/galleries/quality-none/faces", json={**body, "allFaces": False})
    (error,) = single.json()["detail"]
    assert error["msg"].startswith("its face is below the AUTO quality bar: SMALL_FACE"), error


def test_the_gallery_client_enrolls_a_group_photo_and_lists_its_unindexed_faces(server, group):
    with GalleryClient(server.url, api_key=API_KEY) as galleries:
        answer = galleries.enroll(
            "quality-client", "crowd", image=GROUP, all_faces=True, max_results=128
        )
        assert isinstance(answer, EnrollResponse)
        check_split(answer.model_dump(mode="json", by_alias=True), group)
        small = cv2.imencode(".png", small_group())[1].tobytes()
        with pytest.raises(FaceApiError) as refused:
            galleries.enroll("quality-client", "crowd", image=small, all_faces=True)
        assert refused.value.status == 422 and "none of its " in str(refused.value.detail)
        assert galleries.delete_gallery("quality-client") == len(expected_split(group)[0])


def test_the_published_document_carries_the_unindexed_faces(server, api):
    spec = api.get("/docs.json").json()
    schemas = spec["components"]["schemas"]
    enrolled = schemas["EnrollResponse"]["properties"]["unindexedFaces"]
    assert enrolled["items"] == {"$ref": "#/components/schemas/UnindexedFace"}
    assert set(schemas["UnindexedFace"]["required"]) == {"position", "reasons", "face_detect"}
    reasons = schemas["FaceQuality"]["properties"]["reasons"]["items"]["enum"]
    assert "LOW_RECOGNIZABILITY" in reasons and "MOTION_BLUR" in reasons
    assert "recognizability" in schemas["FaceQuality"]["required"]


def test_search_reports_its_probes_quality_when_asked(api):
    assert enroll(api, "quality-search", b64(IDENTITIES[0])).status_code == 200
    body = {"image": b64(IDENTITIES[1]), "returnQuality": True}
    (result,) = api.post("/v1/galleries/quality-search/search", json=body).json()["results"]
    assert result["face_detect"]["quality"]["embeddingNorm"] > 0
    plain = {"image": b64(IDENTITIES[1])}
    (result,) = api.post("/v1/galleries/quality-search/search", json=plain).json()["results"]
    assert "quality" not in result["face_detect"]
    api.delete("/v1/galleries/quality-search", params={"confirm": "quality-search"})
