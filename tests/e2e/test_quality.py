"""Per-face quality and enrollment's quality bar, on the identity photos and their degradations,
through a real server."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.probes.quality import DEGRADATIONS
from tests.helpers import b64
from tests.paths import CROWD, IDENTITIES, identity_of

HEAVY = {"blur sigma 5": "LOW_SHARPNESS", "darkened x0.25": "LOW_BRIGHTNESS"}
HEAVY["face 40 px wide"] = "SMALL_FACE"


def jpeg_b64(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", image)  # lossless: the degradation alone changes the pixels
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def largest_face(api, image: str, path: str = "/v1/detect") -> dict:
    body = {"image": image, "returnQuality": True}
    if path == "/v1/detect":
        body["maxResults"] = 1
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    return answer["faces"][0] if path == "/v1/detect" else answer["face_detect"]


@pytest.fixture(scope="module")
def graded(api) -> dict[str, dict[str, dict]]:
    """Per photo, the largest face of the clean frame and of each degradation, with its unit
    embedding under ``embedding``."""
    out: dict[str, dict[str, dict]] = {}

    def embedded(image: str) -> dict:
        answer = api.post("/v1/embeddings", json={"image": image, "returnQuality": True}).json()
        return {**answer["face_detect"], "embedding": np.array(answer["embeddings"])}

    for photo in IDENTITIES:
        image = cv2.imread(str(photo))
        clean = embedded(b64(photo))
        box = clean["boundingBox"]
        face = np.array([box["left"], box["top"], box["right"], box["bottom"]], np.float32)
        out[photo.name] = {"clean": clean}
        for name, degrade in DEGRADATIONS.items():
            out[photo.name][name] = embedded(jpeg_b64(degrade(image, face)))
    return out


def test_without_return_quality_answers_have_no_quality(api):
    image = b64(CROWD[0])
    plain = api.post("/v1/detect", json={"image": image}).json()
    asked = api.post("/v1/detect", json={"image": image, "returnQuality": True}).json()
    assert all("quality" not in face for face in plain["faces"])
    assert all(face["quality"]["grade"] in ("low", "medium", "high") for face in asked["faces"])
    for face in asked["faces"]:
        del face["quality"]
    assert asked == plain  # the same faces, boxes and landmarks, only quality added
    feature = api.post("/v1/feature", json={"image": b64(IDENTITIES[0])}).json()
    assert "quality" not in feature["face_detect"]


def test_quality_is_on_every_route_that_asks_json_and_multipart(api):
    photo = IDENTITIES[0]
    detected = largest_face(api, b64(photo))["quality"]
    assert detected["embeddingNorm"] is None  # detection alone embeds nothing
    for path in ("/v1/feature", "/v1/embeddings"):
        quality = largest_face(api, b64(photo), path)["quality"]
        assert quality["embeddingNorm"] > 0
        assert quality["sharpness"] == pytest.approx(detected["sharpness"], abs=1e-3)
    for path in ("/v1/file/detect", "/v1/file/feature", "/v1/file/embeddings"):
        files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
        answer = api.post(path, files=files, data={"returnQuality": "true"}).json()
        face = answer["faces"][0] if "faces" in answer else answer["face_detect"]
        assert face["quality"]["grade"] == detected["grade"], path
    keys = {
        "grade",
        "reasons",
        "faceSize",
        "interocularDistance",
        "yaw",
        "pitch",
        "roll",
        "sharpness",
        "brightness",
        "detectorScore",
        "embeddingNorm",
    }
    assert set(detected) == keys
    assert 0 <= detected["sharpness"] <= 1 and 0 <= detected["brightness"] <= 1


def test_each_measure_moves_the_right_way_on_every_photo(graded):
    for name, faces in graded.items():
        clean = faces["clean"]["quality"]
        for blurred in ("blur sigma 2", "blur sigma 5"):
            assert faces[blurred]["quality"]["sharpness"] < clean["sharpness"], (name, blurred)
        assert faces["darkened x0.25"]["quality"]["brightness"] < clean["brightness"], name
        assert faces["face 40 px wide"]["quality"]["faceSize"] < clean["faceSize"], name
        mirrored = faces["mirrored"]["quality"]["yaw"]
        if abs(clean["yaw"]) >= 5:  # a frontal face's yaw is noise around 0
            assert mirrored * clean["yaw"] < 0, (name, clean["yaw"], mirrored)


def test_a_40_degree_turn_gives_a_roll_within_5_degrees_of_40(graded):
    """On the frames turned at most 30 degrees: in a profile (one eye hidden) the detector's
    eye landmarks do not keep their places when the photo turns (measured: 5 of the 33 frames,
    all turned 45-64 degrees, or blurry at the eye)."""
    frontal = {n: f for n, f in graded.items() if abs(f["clean"]["quality"]["yaw"]) <= 30}
    assert len(frontal) >= 20
    for name, faces in frontal.items():
        turned = faces["turned 40 degrees"]["quality"]["roll"] - faces["clean"]["quality"]["roll"]
        # OpenCV turns counter-clockwise: the eye line's angle in image coordinates falls by 40.
        assert abs(abs(turned) - 40) <= 5, (name, turned)


def test_the_grade_falls_with_the_same_person_cosine(graded):
    """What quality buys: a degraded probe graded lower matches its person's other clean frames
    worse (benchmarks/probes/quality.py prints the table the README shows)."""
    by_grade: dict[str, list[float]] = {"high": [], "medium": [], "low": []}
    for name, faces in graded.items():
        person = identity_of(Path(name))
        gallery = [
            f["clean"]["embedding"]
            for n, f in graded.items()
            if identity_of(Path(n)) == person and n != name
        ]
        for variant in DEGRADATIONS:
            face = faces[variant]
            cosine = max(float(g @ face["embedding"]) for g in gallery)
            by_grade[face["quality"]["grade"]].append(cosine)
    means = {grade: np.mean(cosines) for grade, cosines in by_grade.items() if cosines}
    assert set(means) == {"high", "medium", "low"}, {g: len(c) for g, c in by_grade.items()}
    assert means["high"] > means["medium"] > means["low"], means


def enroll(api, gallery: str, image: str, **fields) -> object:
    body = {"subject": "someone", "image": image, **fields}
    return api.post(f"/v1/galleries/{gallery}/faces", json=body)


def test_auto_enrolls_every_clean_frame_and_refuses_the_ruined_ones(api):
    for photo in IDENTITIES:
        answer = enroll(api, "quality-clean", b64(photo))
        assert answer.status_code == 200, (photo.name, answer.text)
    for name, reason in HEAVY.items():
        refused = 0
        for photo in IDENTITIES:
            image = cv2.imread(str(photo))
            clean = largest_face(api, b64(photo))["boundingBox"]
            face = np.array([clean["left"], clean["top"], clean["right"], clean["bottom"]])
            answer = enroll(api, "quality-ruined", jpeg_b64(DEGRADATIONS[name](image, face)))
            if answer.status_code == 422:
                (error,) = answer.json()["detail"]
                assert error["loc"] == ["body", "image"] and error["type"] == "value_error.quality"
                assert reason in error["msg"] and "AUTO" in error["msg"], error
                refused += 1
            else:
                assert answer.status_code == 200, answer.text
        assert refused >= 0.9 * len(IDENTITIES), (name, refused)
    api.delete("/v1/galleries/quality-clean")
    api.delete("/v1/galleries/quality-ruined")


def test_each_quality_filter_sets_its_own_bar(api):
    photo = IDENTITIES[0]
    image = cv2.imread(str(photo))
    blurred = jpeg_b64(DEGRADATIONS["blur sigma 5"](image, None))
    assert enroll(api, "quality-bars", blurred, qualityFilter="NONE").status_code == 200
    assert enroll(api, "quality-bars", blurred, qualityFilter="LOW").status_code == 200
    assert enroll(api, "quality-bars", blurred, qualityFilter="MEDIUM").status_code == 422
    files = {"image": ("blurred.png", base64.b64decode(blurred), "image/png")}
    form = {"subject": "someone", "qualityFilter": "AUTO"}
    refused = api.post("/v1/file/galleries/quality-bars/faces", files=files, data=form)
    assert refused.status_code == 422 and "LOW_SHARPNESS" in refused.text
    clean = largest_face(api, b64(photo))
    status = enroll(api, "quality-bars", b64(photo), qualityFilter="HIGH").status_code
    assert status == (200 if clean["quality"]["grade"] == "high" else 422)
    wrong = enroll(api, "quality-bars", b64(photo), qualityFilter="STRICT")
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"][-1] == "qualityFilter"
    api.delete("/v1/galleries/quality-bars")


def test_search_reports_its_probes_quality_when_asked(api):
    assert enroll(api, "quality-search", b64(IDENTITIES[0])).status_code == 200
    body = {"image": b64(IDENTITIES[1]), "returnQuality": True}
    (result,) = api.post("/v1/galleries/quality-search/search", json=body).json()["results"]
    assert result["face_detect"]["quality"]["embeddingNorm"] > 0
    plain = {"image": b64(IDENTITIES[1])}
    (result,) = api.post("/v1/galleries/quality-search/search", json=plain).json()["results"]
    assert "quality" not in result["face_detect"]
    api.delete("/v1/galleries/quality-search")
