"""One server per gallery folder, readable by the service's user only.

The galleries hold biometric templates: the folder is the service user's alone (``0700``, its
files ``0600``, fixed at every start for folders an earlier version made), and the gallery
service creates files with umask ``077``, Milvus Lite's included.

An embedded Milvus Lite database is one process's file.

A second server on the same ``FACE_GALLERY_DIR`` (another ``./scripts/serve.sh`` from the same
checkout, on another port) would otherwise start, then answer 503 "opened by another program" on
its first gallery call. It refuses to start instead, naming the setting. The claim is an
exclusive ``flock`` on ``.lock`` in the folder: the kernel releases it when the claiming process
dies, however it dies, so a crashed server never leaves a stale claim behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO

log = logging.getLogger("face_api.galleries")
LOCK_FILE = ".lock"
# A server restarted at once may find its predecessor's gallery worker still exiting.
CLAIM_WAIT_S = 10.0


class GalleryFolderInUseError(RuntimeError):
    """Another running server keeps its galleries in this folder."""


PRIVATE = 0o077  # the umask: nothing for the group or others


def make_private(folder: Path) -> None:
    """Files this process creates from now on are its user's only; ``folder`` and everything in
    it too (what an earlier version made readable by others)."""
    os.umask(PRIVATE)
    folder.mkdir(parents=True, exist_ok=True)
    for path in [folder, *folder.rglob("*")]:
        try:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~PRIVATE & 0o7777)
        except PermissionError:  # a mounted folder of another user's: say so, serve anyway
            log.warning("cannot make %s private to this user (not its owner)", path)


def claim(folder: Path, wait_s: float = CLAIM_WAIT_S) -> IO[str]:
    """Create ``folder`` if needed (its user's only) and hold it for this process; keep the
    returned file open.

    Raises ``GalleryFolderInUseError`` when another process still holds it after ``wait_s``.
    """
    make_private(folder)
    # The service user's own file, never a link planted in its place.
    descriptor = os.open(
        folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600
    )
    handle = os.fdopen(descriptor, "a+", encoding="utf-8")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise GalleryFolderInUseError(
                    f"the gallery folder {folder.resolve()} is used by another running server "
                    f"(pid {holder}); give this one its own FACE_GALLERY_DIR, or stop the other"
                ) from None
            time.sleep(0.2)
    with contextlib.suppress(OSError):
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
    return handle
