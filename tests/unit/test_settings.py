"""Settings from the environment: keys, device, limits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from face_api.ops.settings import Settings


def test_keys_from_list_and_file(tmp_path, monkeypatch):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("from-file-1\n\n  from-file-2  \n")
    monkeypatch.setenv("FACE_API_KEYS", " a , b,,")
    monkeypatch.setenv("FACE_API_KEYS_FILE", str(keys_file))
    assert Settings().load_api_keys() == {"a", "b", "from-file-1", "from-file-2"}


def test_keys_are_not_in_the_repr(monkeypatch):
    monkeypatch.setenv("FACE_API_KEYS", "very-secret-key")
    assert "very-secret-key" not in repr(Settings())


def test_defaults(monkeypatch):
    for name in ("FACE_DEVICE", "FACE_MODEL", "FACE_API_AUTH", "FACE_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.device == "auto" and settings.model == "buffalo_sc_int8"
    assert settings.auth_enabled and settings.max_body_bytes == 20 * 1024 * 1024
    assert settings.max_pixels == 40_000_000 and settings.det_size == 640


def test_auth_off_only_when_said(monkeypatch):
    monkeypatch.setenv("FACE_API_AUTH", "off")
    assert not Settings().auth_enabled
    monkeypatch.setenv("FACE_API_AUTH", "maybe")
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_device_is_rejected(monkeypatch):
    monkeypatch.setenv("FACE_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("cpus", "workers", "in_flight"),
    [(1, 1, 32), (2, 1, 64), (8, 2, 128), (16, 4, 128), (64, 16, 128)],
)
def test_workers_and_in_flight_limit_follow_the_cpus(monkeypatch, cpus, workers, in_flight):
    import face_api.ops.settings as settings_module

    for name in ("FACE_API_WORKERS", "FACE_MAX_CONCURRENCY", "FACE_IMAGE_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings_module, "available_cpu_count", lambda: cpus)
    settings = Settings()
    assert settings.api_workers == workers
    assert settings.max_concurrency == in_flight
    # A 16-core box is not capped at 32 requests in flight: 4 workers x 128.
    assert settings.api_workers * settings.max_concurrency >= 32 * min(cpus, 2)


def test_explicit_worker_settings_win(monkeypatch):
    monkeypatch.setenv("FACE_API_WORKERS", "3")
    monkeypatch.setenv("FACE_MAX_CONCURRENCY", "10")
    settings = Settings()
    assert (settings.api_workers, settings.max_concurrency) == (3, 10)


def test_detection_batch_depends_on_the_device(monkeypatch):
    monkeypatch.delenv("FACE_DETECT_MAX_BATCH_SIZE", raising=False)
    assert (Settings().detect_batch_size(True), Settings().detect_batch_size(False)) == (32, 1)
    monkeypatch.setenv("FACE_DETECT_MAX_BATCH_SIZE", "4")
    assert Settings().detect_batch_size(False) == 4


def test_galleries_default_to_data_only_in_a_container(monkeypatch):
    monkeypatch.delenv("FACE_GALLERY_DIR", raising=False)
    monkeypatch.delenv("BENTOML_CONTAINERIZED", raising=False)
    assert Settings().gallery_dir == Path("galleries")
    monkeypatch.setenv("BENTOML_CONTAINERIZED", "true")  # set by BentoML's Dockerfile
    assert Settings().gallery_dir == Path("/data")
    monkeypatch.setenv("FACE_GALLERY_DIR", "/srv/galleries")
    assert Settings().gallery_dir == Path("/srv/galleries")


def test_the_gallery_token_from_a_file_stripped(tmp_path, monkeypatch):
    """A mounted Secret (FACE_GALLERY_TOKEN_FILE) keeps the token out of every environment."""
    token_file = tmp_path / "token"
    token_file.write_text("face-api:s3cret\n")
    monkeypatch.delenv("FACE_GALLERY_TOKEN", raising=False)
    monkeypatch.setenv("FACE_GALLERY_TOKEN_FILE", str(token_file))
    settings = Settings()
    assert settings.load_gallery_token() == "face-api:s3cret"
    assert "s3cret" not in repr(settings)
    monkeypatch.delenv("FACE_GALLERY_TOKEN_FILE")
    monkeypatch.setenv("FACE_GALLERY_TOKEN", "root:Milvus")
    assert Settings().load_gallery_token() == "root:Milvus"
    monkeypatch.delenv("FACE_GALLERY_TOKEN")
    assert Settings().load_gallery_token() is None


def test_a_gallery_token_file_that_is_missing_empty_or_doubled_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("FACE_GALLERY_TOKEN", raising=False)
    monkeypatch.setenv("FACE_GALLERY_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValidationError, match="gallery_token_file"):
        Settings()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv("FACE_GALLERY_TOKEN_FILE", str(empty))
    with pytest.raises(ValueError, match="FACE_GALLERY_TOKEN_FILE .* is empty"):
        Settings().load_gallery_token()
    monkeypatch.setenv("FACE_GALLERY_TOKEN", "root:Milvus")
    with pytest.raises(ValidationError, match="not both"):
        Settings()


def test_every_gallery_store_is_opened_with_the_token_from_either_setting(tmp_path, monkeypatch):
    """The service's gallery store and the gallery command both take the token from
    ``load_gallery_token``: no module but the settings reads the raw field."""
    import face_api.galleries.__main__ as command

    token_file = tmp_path / "token"
    token_file.write_text("face-api:from-file\n")
    monkeypatch.delenv("FACE_GALLERY_TOKEN", raising=False)
    monkeypatch.setenv("FACE_GALLERY_TOKEN_FILE", str(token_file))
    opened = []
    monkeypatch.setattr(command, "GalleryStore", lambda *args, **kwargs: opened.append(args))
    command.open_store(Settings(), "buffalo_sc_int8", 512)
    assert opened[0][3] == "face-api:from-file"
    root = Path(__file__).resolve().parents[2]
    readers = [
        path.relative_to(root).as_posix()
        for folder in ("face_api", "runners")
        for path in (root / folder).rglob("*.py")
        if ".gallery_token," in path.read_text() or ".gallery_token)" in path.read_text()
    ]
    assert readers == [], readers


def test_the_gallery_index_is_hnsw_on_a_server_and_flat_in_milvus_lite(monkeypatch):
    for name in ("FACE_GALLERY_URI", "FACE_GALLERY_INDEX", "FACE_GALLERY_SEARCH_PARAMS"):
        monkeypatch.delenv(name, raising=False)
    lite = Settings().gallery_vector_index()
    assert (lite.kind, lite.build, lite.search) == ("FLAT", {}, {})
    monkeypatch.setenv("FACE_GALLERY_URI", "http://milvus:19530")
    server = Settings().gallery_vector_index()
    assert server.kind == "HNSW" and set(server.build) == {"M", "efConstruction"}
    monkeypatch.setenv("FACE_GALLERY_SEARCH_PARAMS", '{"ef": 200}')
    assert Settings().gallery_vector_index().search == {"ef": 200}  # M, efConstruction kept
    monkeypatch.setenv("FACE_GALLERY_INDEX", "IVF_FLAT")
    monkeypatch.setenv("FACE_GALLERY_SEARCH_PARAMS", '{"nprobe": 64}')
    ivf = Settings().gallery_vector_index()
    assert (ivf.kind, ivf.build, ivf.search) == ("IVF_FLAT", {"nlist": 1024}, {"nprobe": 64})


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FACE_GALLERY_INDEX": "HNSW"}, "Milvus Lite has FLAT only"),
        ({"FACE_GALLERY_INDEX": "DISKANN", "FACE_GALLERY_URI": "http://m:19530"}, "HNSW"),
        (
            {"FACE_GALLERY_URI": "http://m:19530", "FACE_GALLERY_SEARCH_PARAMS": '{"nprobe": 8}'},
            "HNSW takes no 'nprobe' (it takes: ef)",
        ),
        (
            {"FACE_GALLERY_URI": "http://m:19530", "FACE_GALLERY_INDEX_PARAMS": '{"M": 1}'},
            "M must be 2 to 2048, not 1",
        ),
        ({"FACE_GALLERY_URI": "http://m:19530", "FACE_GALLERY_SEARCH_PARAMS": '{"ef": "x"}'}, "ef"),
        ({"FACE_GALLERY_SEARCH_PARAMS": '{"ef": 64}'}, "FLAT takes no 'ef' (it takes: none)"),
    ],
)
def test_an_index_that_cannot_be_built_refuses_to_start(monkeypatch, env, says):
    for name in ("FACE_GALLERY_URI", "FACE_GALLERY_INDEX", "FACE_GALLERY_INDEX_PARAMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FACE_GALLERY_SEARCH_PARAMS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=re.escape(says)):
        Settings()
