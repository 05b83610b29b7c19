"""The published OpenAPI document in the standard tools users point at it.

The served ``/docs.json`` must pass ``openapi-spec-validator``; ``openapi-python-client`` must
generate a client from it without a warning; and that generated client, with no hand-written
HTTP, calls every operation once with valid input, parsing each answer into its typed model, and
401 and 422 into the documented error models.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import insightface
import pytest
from openapi_spec_validator import validate

from tests.helpers import b64
from tests.paths import CROWD, DEFAULT_PACK, IDENTITIES, identity_of
from tests.server import API_KEY

# An aligned 112x112 face crop, for the *-only calls: insightface's own sample.
CROP = Path(insightface.__file__).parent / "data" / "images" / "Tom_Hanks_54745.png"
PACKAGE = "face_api_docs_client"  # the generated package, named apart from the project's own


@pytest.fixture(scope="module")
def spec(server) -> dict[str, Any]:
    return httpx.get(f"{server.url}/docs.json", timeout=30).json()


def test_the_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises on the first error


@pytest.fixture(scope="module")
def generated(spec, tmp_path_factory) -> ModuleType:
    """``openapi-python-client generate`` on the served document: a package, no warnings."""
    folder = tmp_path_factory.mktemp("generated")
    (folder / "openapi.json").write_text(json.dumps(spec))
    (folder / "config.yaml").write_text(f"package_name_override: {PACKAGE}\n")
    bin_dir = Path(sys.executable).parent  # its post-hooks run the project's ruff
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            "openapi.json",
            "--meta",
            "none",
            "--config",
            "config.yaml",
            "--output-path",
            PACKAGE,
        ],
        cwd=folder,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output and "Error" not in output, output
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_the_generated_client_calls_every_operation_into_its_typed_model(server, spec, generated):
    api = importlib.import_module(f"{PACKAGE}.api")
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    client = generated.Client(
        base_url=server.url, headers={"x-api-key": API_KEY}, timeout=httpx.Timeout(120)
    )
    called: set[str] = set()

    def call(tag: str, operation: str, expected: str | None, **kwargs: Any) -> Any:
        module = importlib.import_module(f"{api.__name__}.{tag}.{operation}")
        response = module.sync_detailed(client=client, **kwargs)
        assert response.status_code == 200, (operation, response.content[:500])
        if expected is not None:
            assert isinstance(response.parsed, getattr(models, expected)), (operation, response)
        called.add(operation)
        return response.parsed

    def upload(path: Path) -> Any:
        return types.File(payload=io.BytesIO(path.read_bytes()), file_name=path.name)

    person, again = [p for p in IDENTITIES if identity_of(p) == identity_of(IDENTITIES[0])][:2]
    stranger = next(p for p in IDENTITIES if identity_of(p) != identity_of(person))
    image, crowd = b64(person), b64(CROWD[0])

    detected = call("faces", "detect", "DetectResponse", body=models.DetectReqBody(image=crowd))
    assert len(detected.faces) > 1 and detected.faces[0].bounding_box.right > 0
    feature = call("faces", "feature", "FeatureResponse", body=models.FeatureReqBody(image=image))
    call("faces", "feature_only", "FeatureResponse", body=models.CropReqBody(image=b64(CROP)))
    call("faces", "embeddings", "EmbeddingsResponse", body=models.EmbeddingsReqBody(image=image))
    call(
        "faces",
        "embeddings_only",
        "EmbeddingsResponse",
        body=models.CropReqBody(image=b64(CROP)),
    )
    call(
        "faces",
        "multi_feature",
        "MultiFeatureResponse",
        body=models.MultiFeatureReqBody(image=crowd),
    )
    call(
        "faces",
        "multi_embeddings",
        "MultiEmbeddingsResponse",
        body=models.MultiEmbeddingsReqBody(image=crowd),
    )
    same = call(
        "faces", "score", "ScoreResponse", body=models.ScoreReqBody(image1=image, image2=b64(again))
    )
    other = call(
        "faces",
        "feature_score",
        "FeatureScoreResponse",
        body=models.FeatureScoreReqBody(feature1=feature.feature, feature2=feature.feature),
    )
    assert other.score == pytest.approx(1.0, abs=1e-4) and same.score > 0.3
    detected = call(
        "faces",
        "file_detect",
        "DetectResponse",
        body=models.FileDetectForm(image=upload(CROWD[0]), max_results=3),
    )
    assert len(detected.faces) == 3  # a plain form value, read as such
    for operation, form, expected, photo in (
        ("file_feature", "FileFeatureForm", "FeatureResponse", person),
        ("file_feature_only", "FileFeatureOnlyForm", "FeatureResponse", CROP),
        ("file_embeddings", "FileEmbeddingsForm", "EmbeddingsResponse", person),
        ("file_embeddings_only", "FileEmbeddingsOnlyForm", "EmbeddingsResponse", CROP),
    ):
        call("faces", operation, expected, body=getattr(models, form)(image=upload(photo)))
    scored = call(
        "faces",
        "file_score",
        "ScoreResponse",
        body=models.FileScoreForm(image1=upload(person), image2=upload(stranger)),
    )
    assert scored.score < same.score

    gallery, subject = "generated-client", identity_of(person)
    enrolled = call(
        "galleries",
        "enroll",
        "EnrollResponse",
        gallery=gallery,
        body=models.EnrollByImage(subject=subject, image=image),
    )
    call(
        "galleries",
        "file_enroll",
        "EnrollResponse",
        gallery=gallery,
        body=models.FileEnrollForm(image=upload(again), subject=subject),
    )
    found = call(
        "galleries",
        "search",
        "SearchResponse",
        gallery=gallery,
        body=models.SearchByImage(image=image),
    )
    assert found.results[0].matches[0].subject == subject
    call(
        "galleries",
        "file_search",
        "SearchResponse",
        gallery=gallery,
        body=models.FileSearchForm(image=upload(again)),
    )
    verified = call(
        "galleries",
        "verify",
        "VerifyResponse",
        gallery=gallery,
        body=models.VerifyByImage(subject=subject, image=b64(again)),
    )
    assert verified.score > 0.3
    call(
        "galleries",
        "file_verify",
        "VerifyResponse",
        gallery=gallery,
        body=models.FileVerifyForm(image=upload(stranger), subject=subject),
    )
    listed = call("galleries", "list_galleries", "GalleryList")
    assert gallery in {g.name for g in listed.galleries}
    page = call("galleries", "list_faces", "FacePage", gallery=gallery)
    assert page.total == 2
    assert call("galleries", "list_subjects", "SubjectPage", gallery=gallery).total == 1
    face_id = enrolled.faces[0].face_id
    call("galleries", "delete_face", "Deleted", gallery=gallery, face_id=face_id)
    call("galleries", "delete_subject", "Deleted", gallery=gallery, subject=subject)
    call("galleries", "delete_gallery", "Deleted", gallery=gallery, confirm=gallery)

    call("info", "health", "HealthResponse")
    call("info", "server_info", "ServerInfo")
    call("info", "model_names", "ModelNames")
    call("info", "model_detail", "ModelDetail", model_name=DEFAULT_PACK)
    for probe in ("healthz", "livez", "readyz", "metrics"):  # BentoML's, with no body to type
        call("infrastructure", probe, None)

    operations = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    assert called == operations


def test_the_generated_client_parses_401_and_422_into_the_error_models(server, generated):
    models = importlib.import_module(f"{PACKAGE}.models")
    detect = importlib.import_module(f"{PACKAGE}.api.faces.detect")
    enroll = importlib.import_module(f"{PACKAGE}.api.galleries.enroll")
    anonymous = generated.Client(base_url=server.url, timeout=httpx.Timeout(60))
    keyed = generated.Client(
        base_url=server.url, headers={"x-api-key": API_KEY}, timeout=httpx.Timeout(60)
    )
    body = models.DetectReqBody(image=b64(IDENTITIES[0]))
    refused = detect.sync_detailed(client=anonymous, body=body)
    assert refused.status_code == 401 and isinstance(refused.parsed, models.ErrorMessage)
    assert refused.parsed.detail
    invalid: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (
            detect.sync_detailed,
            {"body": models.DetectReqBody(image=b64(IDENTITIES[0]), max_results=0)},
        ),
        (
            enroll.sync_detailed,
            {"gallery": "g", "body": models.EnrollByFeature(subject="", feature="AAAA")},
        ),
    ]
    for function, kwargs in invalid:
        answer = function(client=keyed, **kwargs)
        assert answer.status_code == 422, answer.content
        assert isinstance(answer.parsed, models.HTTPValidationError), answer.content
        error = answer.parsed.detail[0]
        assert isinstance(error, models.ValidationError) and error.msg and error.loc
