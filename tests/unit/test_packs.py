"""Model packs in the store: import from a folder, from a download, and the missing-pack error."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from face_api.inference.packs import PackNotInStoreError, get_pack, import_pack, main, sha256_of
from tests.helpers import serve_folder
from tests.paths import DEFAULT_PACK_DIR, MODELS, needs_workspace_pack


@pytest.mark.skipif(
    bool(needs_workspace_pack("buffalo_m_int8")), reason=str(needs_workspace_pack("buffalo_m_int8"))
)
def test_imported_pack_records_every_file_sha256():
    model = import_pack(str(MODELS / "buffalo_m_int8"), "pack_test_m")
    files = model.info.metadata["files"]
    assert files == {p.name: sha256_of(p) for p in (MODELS / "buffalo_m_int8").glob("*.onnx")}
    assert files["det_2.5g.onnx"].startswith("041f73f4")
    assert model.info.metadata["detector"] == "det_2.5g.onnx"
    assert model.info.metadata["embedding_size"] == 512
    for name, digest in files.items():
        assert sha256_of(Path(model.path_of(name))) == digest
    assert str(get_pack("pack_test_m").tag) == str(model.tag)


def test_missing_pack_says_how_to_import_it():
    with pytest.raises(PackNotInStoreError, match="python -m face_api.inference.packs import"):
        get_pack("never_imported_pack")


def test_folder_without_models_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("no models here")
    with pytest.raises(SystemExit, match="no .onnx files"):
        import_pack(str(tmp_path), "empty_pack")


def test_pack_by_name_is_fetched_with_insightfaces_downloader(tmp_path, monkeypatch, capsys):
    """A model-zoo style zip (files in a subfolder, like antelopev2) from a local mirror."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "mini_pack.zip", "w") as archive:
        for onnx in DEFAULT_PACK_DIR.glob("*.onnx"):
            archive.write(onnx, f"mini_pack/{onnx.name}")
    monkeypatch.chdir(tmp_path)  # the fetch must not depend on a folder named like the pack
    with serve_folder(mirror) as url:
        monkeypatch.setenv("FACE_PACK_DOWNLOAD_URL", url)
        assert main(["import", "mini_pack"]) == 0
    assert "imported mini_pack:" in capsys.readouterr().out
    files = get_pack("mini_pack").info.metadata["files"]
    assert files["det_500m.onnx"].startswith("5e4447f5")
    assert main(["import", "mini_pack", "--if-missing"]) == 0
    assert "already in the store" in capsys.readouterr().out
    shutil.rmtree(mirror)


@pytest.mark.parametrize("source", ["/no/such/buffalo_x", "./buffalo_x", "~/buffalo_x", "a/b"])
def test_a_path_that_does_not_exist_is_an_error_naming_it_never_a_download(
    source, tmp_path, monkeypatch
):
    def no_download(*args):
        raise AssertionError(f"{source!r} was fetched as a pack name")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("face_api.inference.packs.fetch_pack", no_download)
    with pytest.raises(SystemExit) as refused:
        main(["import", source])
    message = str(refused.value)
    assert str(Path(source).expanduser().absolute()) in message and "no pack folder" in message
