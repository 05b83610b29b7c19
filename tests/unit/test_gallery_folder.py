"""One server per gallery folder: the claim, held by a real second process."""

from __future__ import annotations

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
