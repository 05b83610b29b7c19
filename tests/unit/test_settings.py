"""Settings from the environment: keys, device, limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from face_api.settings import Settings


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
