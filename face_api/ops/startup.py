"""Refusing to start: a configuration error in a worker stops the whole server, loudly.

BentoML restarts a worker whose constructor raises, forever; a service that cannot serve
(no API key, no CUDA when CUDA was required) must instead exit, so that the operator sees the
cause and a supervisor does not report a live-but-useless server.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from typing import NoReturn

from face_api.ops import logs

log = logging.getLogger("face_api")
# How the API workers' clients of the internal services (the runner, the gallery service) keep
# their connections: bentoml 1.4.40 closes a client session every `max_requests` calls while
# other calls are still in flight on it (async callers then see resets); huge values avoid the
# recycling.
INTERNAL_CONNECTION = {"max_requests": 10**9, "max_age": 1e9}


# OpenCV bounds every decode by this many pixels, read from the header before any pixel is
# allocated, in every format it decodes (Radiance HDR, PFM, PAM, ... that Pillow cannot read).
# It reads the variable once, when it loads.
OPENCV_PIXEL_BOUND = "OPENCV_IO_MAX_IMAGE_PIXELS"


def bound_image_decoding(max_pixels: int) -> None:
    """Have OpenCV refuse any image over ``max_pixels`` before decoding it: in this process if
    OpenCV is not loaded yet, and in every process started from it (the server's workers)."""
    os.environ[OPENCV_PIXEL_BOUND] = str(max_pixels)
    if "cv2" in sys.modules:
        log.warning("OpenCV was loaded before its decode bound was set; bound in child processes")


def start_worker() -> None:
    """What every service's worker does first: stop with the server, log as this project does."""
    exit_with_parent()
    logs.enable_service_logging()


def freeze_heap() -> None:
    """Keep what this process built so far (modules, sessions, apps, a database client) out of
    the garbage collector's full collections. Each of them walked all of it with the whole process
    paused: 100-130 ms every few seconds in an API worker under load, every request in it waiting
    (benchmarks/README.md, "Galleries at a million faces"). Its garbage is collected first."""
    gc.collect()
    gc.freeze()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent() -> None:
    """Have this worker process stopped (SIGTERM) when its parent, the `bentoml serve` process,
    dies. BentoML starts each worker in a process group of its own, so a SIGKILL to the main
    process left the workers running and holding the port (a restarted server then shared it
    with the old one's workers). Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        log.warning("could not ask to be stopped with the server (prctl errno %d)", errno)
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


class StartupError(RuntimeError):
    """A setting or the environment makes serving impossible."""


def refuse_to_start(message: str) -> NoReturn:
    log.critical("refusing to start: %s", message)
    print(f"face-api refusing to start: {message}", file=sys.stderr, flush=True)
    # The worker's parent is the `bentoml serve` process (its circus arbiter): stop it too.
    if _parent_is_bentoml():
        os.kill(os.getppid(), signal.SIGTERM)
    raise StartupError(message)


def _parent_is_bentoml() -> bool:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as cmdline:
            return b"bentoml" in cmdline.read()
    except OSError:
        return False
