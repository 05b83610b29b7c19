"""One server per gallery folder: the claim, held by a real second process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from face_api.galleries import folder

HOLD = """
import sys, time
from pathlib import Path
from face_api.galleries import folder
claim = folder.claim(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture(autouse=True)
def _umask_kept():
    """A claim sets the process's umask (as the gallery service's): the test session's is kept."""
    kept = os.umask(0o022)
    os.umask(kept)
    yield
    os.umask(kept)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_folder_and_everything_in_it_become_the_users_only(tmp_path):
    galleries = tmp_path / "galleries"
    (galleries / "old").mkdir(parents=True)
    (galleries / "galleries.db").write_bytes(b"x")
    (galleries / "old" / "segment").write_bytes(b"x")
    for path in (galleries, galleries / "old"):
        path.chmod(0o755)
    for path in (galleries / "galleries.db", galleries / "old" / "segment"):
        path.chmod(0o644)
    claim = folder.claim(galleries)
    try:
        assert mode(galleries) == mode(galleries / "old") == 0o700
        assert mode(galleries / "galleries.db") == mode(galleries / "old" / "segment") == 0o600
        assert mode(galleries / folder.LOCK_FILE) == 0o600
        made_later = galleries / "new.db"  # as Milvus Lite makes its files, after the claim
        made_later.write_bytes(b"x")
        assert mode(made_later) == 0o600
    finally:
        claim.close()


def test_a_second_claim_names_the_setting_until_the_holder_exits(tmp_path):
    galleries = tmp_path / "galleries"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(galleries)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(folder.GalleryFolderInUseError) as refused:
            folder.claim(galleries, wait_s=0.5)
        assert time.monotonic() - started >= 0.5  # it waited for a restarting predecessor
        message = str(refused.value)
        assert "FACE_GALLERY_DIR" in message and str(galleries) in message
        assert f"pid {holder.pid}" in message
    finally:
        holder.kill()
        holder.wait()
    # The kernel let go of the killed holder's claim: no stale lock survives a crash.
    handle = folder.claim(galleries, wait_s=0)
    handle.close()


def test_claim_makes_the_folder_and_the_same_process_keeps_it(tmp_path):
    galleries = tmp_path / "new" / "galleries"
    handle = folder.claim(galleries)
    try:
        assert galleries.is_dir()
        with pytest.raises(folder.GalleryFolderInUseError):
            folder.claim(galleries, wait_s=0)  # a second open file in this process, refused too
    finally:
        handle.close()
