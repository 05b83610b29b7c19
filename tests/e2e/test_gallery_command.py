"""The galleries command (``python -m face_api.galleries``) as an operator and an attacker would
run it: the import door takes only what enroll takes, every refusal is one line and leaves no
gallery, its memory is bounded by the line limit, and what it writes is its user's only, never
through a planted link."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from face_api.galleries.transfer import MAX_LINE_BYTES
from face_api.pipeline.features import encode_feature
from tests.helpers import PEAK_KB_SOURCE
from tests.milvus_server import running_milvus
from tests.paths import DEFAULT_PACK, ROOT

DIM = 512  # the served pack's


def command(*args: str, folder: Path, uri: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACE_GALLERY_DIR": str(folder), "FACE_MODEL": DEFAULT_PACK}
    env.pop("FACE_GALLERY_URI", None)
    if uri:
        env["FACE_GALLERY_URI"] = uri
    return subprocess.run(
        [sys.executable, "-m", "face_api.galleries", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def face_line(subject, face_id=None, n: int = 0, dim: int = DIM, metadata=None) -> dict:
    vector = np.random.default_rng(n).standard_normal(dim).astype(np.float32)
    return {
        "faceId": face_id if face_id is not None else f"{n:032x}",
        "subject": subject,
        "metadata": metadata,
        "embedding": encode_feature(vector),
    }


def gallery_file(path: Path, faces: list, dimension: int = DIM, pack: str = DEFAULT_PACK) -> Path:
    header = {
        "format": "face-api-gallery",
        "version": 1,
        "gallery": "imported",
        "pack": pack,
        "dimension": dimension,
    }
    with gzip.open(path, "wt", encoding="utf-8") as text:
        text.write(json.dumps(header) + "\n")
        for face in faces:
            text.write(json.dumps(face) + "\n")
        text.write(json.dumps({"end": True, "faces": len(faces)}) + "\n")
    return path


def refused_in_one_line(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def no_gallery(folder: Path) -> None:
    listed = command("list", folder=folder)
    assert listed.returncode == 0 and listed.stdout.strip() == "", listed


BAD_SUBJECTS = ["..", "a/b", "line1\nline2", "esc\x1b[31m", "nul\x00x", "zw\u200bsp", "bidi\u202e"]


@pytest.mark.parametrize("subject", BAD_SUBJECTS)
def test_the_import_refuses_a_subject_enroll_would_refuse(tmp_path, imported_pack, subject):
    path = gallery_file(tmp_path / "g.faces.jsonl.gz", [face_line("fine", n=1), face_line(subject)])
    line = refused_in_one_line(command("import", str(path), folder=tmp_path / "g"), "face 2")
    assert "\n" not in line and "\x1b" not in line
    no_gallery(tmp_path / "g")


@pytest.mark.parametrize(
    ("faces", "words"),
    [
        ([face_line("a", n=1), face_line("b", face_id=f"{1:032x}", n=2)], ["given twice"]),
        ([face_line("a", face_id=7)], ["faceId 7"]),
        ([face_line("a", face_id="ABCDEF" + "0" * 26)], ["hexadecimal"]),
        ([face_line("a", n=1), face_line("b", n=2, dim=3)], ["served pack's 512"]),
        ([face_line("a", metadata=json.loads("[" * 30 + "]" * 30))], ["metadata"]),
        ([face_line("Alice", n=1), face_line("\u0410lice", n=2)], ["looks the same"]),
    ],
    ids=["duplicate ids", "integer id", "upper-case id", "mixed sizes", "deep metadata", "twins"],
)
def test_the_import_refuses_each_bad_face_in_one_line(tmp_path, imported_pack, faces, words):
    path = gallery_file(tmp_path / "g.faces.jsonl.gz", faces)
    refused_in_one_line(command("import", str(path), folder=tmp_path / "g"), *words)
    no_gallery(tmp_path / "g")


def test_the_size_comes_from_the_served_pack_never_from_the_file(tmp_path, imported_pack):
    small = gallery_file(tmp_path / "g.faces.jsonl.gz", [face_line("a", dim=3)], dimension=3)
    refused_in_one_line(command("import", str(small), folder=tmp_path / "g"), "512-d")
    no_gallery(tmp_path / "g")


def test_an_nfd_subject_is_imported_in_nfc(tmp_path, imported_pack):
    path = gallery_file(tmp_path / "g.faces.jsonl.gz", [face_line("Jose\u0301")])
    done = command("import", str(path), folder=tmp_path / "g")
    assert done.returncode == 0, done.stderr
    exported = command(
        "export", "imported", str(tmp_path / "out.faces.jsonl.gz"), folder=tmp_path / "g"
    )
    assert exported.returncode == 0, exported.stderr
    with gzip.open(tmp_path / "out.faces.jsonl.gz", "rt", encoding="utf-8") as text:
        assert json.loads(text.readlines()[1])["subject"] == "Jos\u00e9"


def test_a_line_over_the_limit_is_refused_before_it_is_read_whole(tmp_path, imported_pack):
    """A 1 MB gzip file holding one 1 GiB line had taken 2.7 GB of memory before its error."""
    path = tmp_path / "huge.faces.jsonl.gz"
    header = {"format": "face-api-gallery", "version": 1, "gallery": "huge"}
    header |= {"pack": DEFAULT_PACK, "dimension": DIM}
    with gzip.open(path, "wb", compresslevel=9) as raw:
        raw.write(json.dumps(header).encode() + b"\n")
        chunk = b"a" * (64 * 1024 * 1024)
        for _ in range(16):  # 1 GiB, no line break
            raw.write(chunk)
    assert path.stat().st_size < 2 * 1024 * 1024
    # The command as run, reporting its own peak memory as it exits.
    measured = (
        f"{PEAK_KB_SOURCE}"
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('peak-kb', peak_kb(), file=sys.stderr))\n"
        "sys.argv = ['face_api.galleries', *sys.argv[1:]]\n"
        "runpy.run_module('face_api.galleries', run_name='__main__')\n"
    )
    env = {**os.environ, "FACE_GALLERY_DIR": str(tmp_path / "g"), "FACE_MODEL": DEFAULT_PACK}
    env.pop("FACE_GALLERY_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", measured, "import", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    peak_kb = int(done.stderr.rsplit("peak-kb", 1)[1].split()[0])
    done.stderr = done.stderr.rsplit("peak-kb", 1)[0]
    refused_in_one_line(done, f"over {MAX_LINE_BYTES} bytes")
    # The command's own size (Python, NumPy, Milvus Lite's client, BentoML's model store) and a
    # line's worth: never the line.
    assert peak_kb < 600 * 1024, peak_kb
    no_gallery(tmp_path / "g")


def test_export_writes_its_users_files_only_never_through_a_planted_link(tmp_path, imported_pack):
    folder = tmp_path / "g"
    good = gallery_file(tmp_path / "in.faces.jsonl.gz", [face_line("ada", n=1)])
    assert command("import", str(good), folder=folder).returncode == 0
    out = tmp_path / "backup"
    out.mkdir()
    victim = tmp_path / "someone-elses.txt"
    victim.write_text("theirs")
    (out / "imported.faces.jsonl.gz.partial").symlink_to(victim)  # what the export once used
    (out / "imported.faces.jsonl.gz").symlink_to(victim)
    done = command("export", "--all", str(out / "new"), folder=folder)
    assert done.returncode == 0, done.stderr
    again = command("export", "--all", str(out), folder=folder)
    assert again.returncode == 0, again.stderr
    assert victim.read_text() == "theirs"  # never written through the links
    written = out / "imported.faces.jsonl.gz"
    assert not written.is_symlink() and stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "new" / "imported.faces.jsonl.gz").stat().st_mode) == 0o600


def test_export_from_a_milvus_server_writes_its_users_files_only(tmp_path, imported_pack):
    """Milvus Lite's folder was private; with FACE_GALLERY_URI the files were 0644, folders 0755."""
    good = gallery_file(tmp_path / "in.faces.jsonl.gz", [face_line("ada", n=1)])
    with running_milvus(tmp_path / "milvus") as milvus:
        assert command("import", str(good), folder=tmp_path / "g", uri=milvus.uri).returncode == 0
        one = command(
            "export",
            "imported",
            str(tmp_path / "one.faces.jsonl.gz"),
            folder=tmp_path / "g",
            uri=milvus.uri,
        )
        assert one.returncode == 0, one.stderr
        every = command(
            "export", "--all", str(tmp_path / "all"), folder=tmp_path / "g", uri=milvus.uri
        )
        assert every.returncode == 0, every.stderr
    assert stat.S_IMODE((tmp_path / "one.faces.jsonl.gz").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "all").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "all" / "imported.faces.jsonl.gz").stat().st_mode) == 0o600
