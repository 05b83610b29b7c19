"""A gallery to a file and back (face_api/galleries/transfer.py and the galleries command), on
real embedded Milvus Lite stores in temporary folders."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from face_api.galleries.store import GalleryStore
from face_api.galleries.transfer import BATCH, export_gallery, import_gallery, read_header
from face_api.ops.errors import ApiError
from tests.paths import DEFAULT_PACK, ROOT

DIM = 512  # the served pack's embedding size (the command reads it from the model store)
PACK = DEFAULT_PACK


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def people() -> np.ndarray:
    return unit(np.random.default_rng(4).standard_normal((30, DIM)).astype(np.float32))


@pytest.fixture
def source(tmp_path, people) -> GalleryStore:
    store = GalleryStore(str(tmp_path / "source.db"), PACK, DIM)
    for i in range(10):
        store.enroll("staff", f"person-{i}", people[3 * i : 3 * i + 3], {"desk": i, "n": [i]})
    return store


def answers(store: GalleryStore, probes: np.ndarray) -> list[list[tuple[str, str, float]]]:
    return [
        [(m.face_id, m.subject, round(m.score, 5)) for m in found]
        for found in store.search("staff", probes, limit=3)
    ]


def test_a_gallery_moves_whole_keeping_its_face_ids_and_answers(tmp_path, source, people):
    path = tmp_path / "staff.faces.jsonl.gz"
    assert export_gallery(source, "staff", path) == 30
    assert read_header(path) == {
        "format": "face-api-gallery",
        "version": 1,
        "gallery": "staff",
        "pack": PACK,
        "dimension": DIM,
    }
    target = GalleryStore(str(tmp_path / "target.db"), PACK, DIM)
    assert import_gallery(target, path) == ("staff", 30)
    assert answers(target, people) == answers(source, people)
    assert target.faces("staff", 0, 100) == source.faces("staff", 0, 100)  # ids, metadata
    assert (
        target.verify("staff", "person-4", people[13]).face_id
        == source.verify("staff", "person-4", people[13]).face_id
    )
    assert import_gallery(target, path, gallery="copy") == ("copy", 30)
    assert target.gallery("copy").faces == 30


def test_an_import_refuses_another_pack_and_an_existing_gallery_unless_asked(
    tmp_path, source, people
):
    path = tmp_path / "staff.faces.jsonl.gz"
    export_gallery(source, "staff", path)
    other = GalleryStore(str(tmp_path / "other.db"), "another-pack", DIM)
    with pytest.raises(ApiError, match="never mixed"):
        import_gallery(other, path)
    assert other.galleries() == []
    target = GalleryStore(str(tmp_path / "target.db"), PACK, DIM)
    [kept] = target.enroll("staff", "someone else", people[:1])
    with pytest.raises(ApiError, match="--replace") as refused:
        import_gallery(target, path)
    assert refused.value.status == 409
    assert [f.face_id for f in target.faces("staff", 0, 10)[0]] == [kept]
    import_gallery(target, path, replace=True)
    assert target.gallery("staff").faces == 30 and kept not in {
        f.face_id for f in target.faces("staff", 0, 100)[0]
    }


def rewrite(path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as text:
        text.writelines(lines)


@pytest.mark.parametrize(
    "damage",
    [
        "cut before its end line",
        "cut in the middle of the gzip",
        "a bad embedding",
        "a wrong count",
    ],
)
def test_a_damaged_file_leaves_no_gallery_at_all(tmp_path, source, damage):
    path = tmp_path / "staff.faces.jsonl.gz"
    export_gallery(source, "staff", path)
    with gzip.open(path, "rt", encoding="utf-8") as text:
        lines = text.readlines()
    if damage == "cut before its end line":
        rewrite(path, lines[:-1])
    elif damage == "cut in the gzip":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "a bad embedding":
        face = json.loads(lines[20])
        face["embedding"] = face["embedding"][:-8]
        rewrite(path, [*lines[:20], json.dumps(face) + "\n", *lines[21:]])
    else:
        rewrite(path, [*lines[:-1], json.dumps({"end": True, "faces": 31}) + "\n"])
    target = GalleryStore(str(tmp_path / "target.db"), PACK, DIM)
    with pytest.raises(ApiError):
        import_gallery(target, path)
    with pytest.raises(ApiError) as missing:
        target.gallery("staff")
    assert missing.value.status == 404
    assert target.galleries() == []


def test_an_import_that_stopped_half_way_is_never_served(tmp_path, people):
    """As a killed import leaves it: its faces in, its end never reached."""
    db = str(tmp_path / "target.db")
    stopped = GalleryStore(db, PACK, DIM)
    stopped.begin_import("half", replace=False)
    faces = [
        {"face_id": f"{i:032x}", "subject": "x", "metadata": None, "vector": people[i]}
        for i in range(5)
    ]
    stopped.import_faces("half", faces)
    store = GalleryStore(db, PACK, DIM)  # another process, later
    assert store.galleries() == []
    for call in (
        lambda: store.search("half", people[:1], limit=1),
        lambda: store.faces("half", 0, 10),
        lambda: store.enroll("half", "y", people[:1]),
    ):
        with pytest.raises(ApiError, match="being imported") as refused:
            call()
        assert refused.value.status == 503
    with pytest.raises(ApiError, match="did not finish"):
        store.begin_import("half", replace=False)
    assert store.delete_gallery("half") == 5  # erasure: it is gone, marker and all
    [fresh] = store.enroll("half", "y", people[:1])
    assert [f.face_id for f in store.faces("half", 0, 10)[0]] == [fresh]


def peaks(tmp_path, size: int) -> tuple[int, int]:
    """The most memory (Python's allocations) an export and an import of ``size`` faces took."""
    store = GalleryStore(str(tmp_path / f"big{size}.db"), PACK, DIM)
    rng = np.random.default_rng(size)
    for first in range(0, size, BATCH):
        store.enroll("big", f"s{first}", unit(rng.standard_normal((BATCH, DIM)).astype(np.float32)))
    path = tmp_path / f"big{size}.faces.jsonl.gz"
    target = GalleryStore(str(tmp_path / f"target{size}.db"), PACK, DIM)
    tracemalloc.start()
    try:
        assert export_gallery(store, "big", path) == size
        _, exported = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert import_gallery(target, path) == ("big", size)
        _, imported = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert target.gallery("big").faces == size
    return exported, imported


def test_export_and_import_stream_a_batch_at_a_time(tmp_path):
    """Three times the faces, not three times the memory: a batch at a time (6,000 faces are
    about 100 MB as Python lists of floats)."""
    small, large = peaks(tmp_path, 2 * BATCH), peaks(tmp_path, 6 * BATCH)
    assert large[0] < 1.5 * small[0] and large[1] < 1.5 * small[1], (small, large)
    assert max(large) < 40e6, large


def command(*args: str, folder) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACE_GALLERY_DIR": str(folder), "FACE_MODEL": PACK}
    env.pop("FACE_GALLERY_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "face_api.galleries", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_the_command_exports_lists_and_imports_and_refuses_a_folder_in_use(
    tmp_path, people, imported_pack
):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    # Enrolled by another process, as a server would: Milvus Lite is one process's file.
    enroll = (
        "import sys, numpy as np\n"
        "from face_api.galleries.store import GalleryStore\n"
        f"store = GalleryStore(sys.argv[1], {PACK!r}, {DIM})\n"
        "store.enroll('door', 'ada', np.load(sys.argv[2]))\n"
    )
    np.save(tmp_path / "people.npy", people[:2])
    subprocess.run(
        [sys.executable, "-c", enroll, str(first / "galleries.db"), str(tmp_path / "people.npy")],
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    exported = command("export", "--all", str(tmp_path / "backup"), folder=first)
    assert exported.returncode == 0, exported.stderr
    path = tmp_path / "backup" / "door.faces.jsonl.gz"
    assert exported.stdout.strip() == f"exported door: 2 faces to {path}"
    imported = command("import", str(path), "--as", "entrance", folder=second)
    assert imported.returncode == 0, imported.stderr
    listed = command("list", folder=second)
    assert listed.stdout.strip() == f"entrance\t{PACK}\t{DIM}\t2"
    again = command("import", str(path), "--as", "entrance", folder=second)
    assert again.returncode == 1 and "--replace" in again.stderr

    from face_api.galleries import folder as gallery_folder

    held = gallery_folder.claim(second)  # as a running server holds its folder
    try:
        refused = command("list", folder=second)
        assert refused.returncode == 1 and "FACE_GALLERY_DIR" in refused.stderr
    finally:
        held.close()
