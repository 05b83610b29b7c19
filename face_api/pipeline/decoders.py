"""Where the runner decodes images: processes of their own, which a request's deadline can stop.

A decoder thread cannot be cancelled: a request whose decode outlived its deadline was answered
503 while the thread went on (39 s more, measured), holding a core from every other request. So
each image is inspected (``inspect_image``: format, size, structure) and decoded
(``decode_image``) in one of a few long-lived worker processes, and a worker still busy when the
request's deadline passes is killed and replaced. A worker that dies on an image (a decoder's
crash) is replaced too, and the image is a 422. Between the two calls the pipeline reserves the
request's real pixels against its budget, so a refused request (429) costs no decode; each call
takes a worker for itself alone, so no request holds one while it waits for another.

A worker speaks over a socket pair: the parent sends the encoded bytes and what to do; the worker
answers the header, or the shape and then the pixels, handed over as a memory file (``memfd``)
that becomes the runner's array without a copy. Through the socket a 12 MP
image's pixels took 60-110 ms; a memory file needs no ``/dev/shm``, whose size in a container
(64 MB by default) is under one 40 MP image.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import mmap
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from face_api.ops.context import current
from face_api.ops.errors import ApiError
from face_api.pipeline.images import ImageHeader, decode_image, inspect_image

log = logging.getLogger("face_api.runner")
_INSPECT, _DECODE, _READY = "inspect", "decode", "ready"
_START_TIMEOUT_S = 60.0  # a worker's imports (OpenCV, NumPy, Pillow) on a busy machine
# Shared, and its pages mapped at once rather than one fault each.
_MAPPED = mmap.MAP_SHARED | mmap.MAP_POPULATE


class DecoderDiedError(RuntimeError):
    """A worker process exited while it held an image."""


class _Worker:
    """One decode process and the parent's end of its socket."""

    def __init__(self, max_pixels: int) -> None:
        parent, child = socket.socketpair()
        # The same imports as this process, wherever the service runs from (a Bento's src/).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(child.fileno()), str(max_pixels)],
            pass_fds=[child.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        child.close()
        self.socket = parent  # for the pixels' memory files
        self.conn = Connection(os.dup(parent.fileno()))  # for messages

    def wait_ready(self) -> None:
        """Returns once the worker's imports are done (it says so first)."""
        try:
            self._receive(_START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise

    def call(self, message: Any, deadline: float | None) -> Any:
        """Sends ``message`` and answers the worker's reply (an ``ApiError`` raised again)."""
        self.conn.send(message)
        return self._receive(_remaining(deadline))

    def decode(self, message: Any, deadline: float | None) -> np.ndarray:
        """Sends a decode ``message``; answers the pixels."""
        shape = self.call(message, deadline)
        return self._receive_pixels(tuple(shape), _remaining(deadline))

    def _receive_pixels(self, shape: tuple[int, ...], timeout_s: float | None) -> np.ndarray:
        """The decoded image, mapped from the memory file the worker sends after its shape."""
        self._wait(timeout_s)
        try:
            _, fds, _, _ = socket.recv_fds(self.socket, 1, 1)
        except OSError:
            raise DecoderDiedError from None
        if len(fds) != 1:
            raise DecoderDiedError
        try:
            pixels = mmap.mmap(fds[0], int(np.prod(shape)), flags=_MAPPED)
        finally:
            os.close(fds[0])
        return np.frombuffer(pixels, np.uint8).reshape(shape)  # keeps the mapping alive

    def _receive(self, timeout_s: float | None) -> Any:
        self._wait(timeout_s)
        try:
            kind, value = self.conn.recv()
        except (EOFError, OSError):
            raise DecoderDiedError from None
        if kind == "error":
            raise ApiError.from_wire(value)
        return value

    def _wait(self, timeout_s: float | None) -> None:
        if not self.conn.poll(timeout_s):
            raise TimeoutError

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        self.conn.close()
        self.socket.close()


class ImageDecoders:
    """``processes`` workers taking one image at a time each; a request waits for an idle one
    (within its deadline). Safe from any thread and event loop: workers come back from the
    threads that run exchanges and that start replacements."""

    def __init__(self, processes: int, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._threads = ThreadPoolExecutor(processes, thread_name_prefix="face-decoders")
        self._workers = [_Worker(max_pixels) for _ in range(processes)]  # they start together
        for worker in self._workers:
            worker.wait_ready()
        self._lock = threading.Lock()
        self._idle = list(self._workers)
        self._waiting: collections.deque[asyncio.Future[_Worker]] = collections.deque()

    async def inspect(self, data: bytes, field: str) -> ImageHeader:
        """The image's header (``inspect_image``), read by a worker."""
        format_, width, height = await self._exchange(_Worker.call, (_INSPECT, field, data))
        return ImageHeader(format_, width, height)

    async def decode(self, data: bytes, field: str, header: ImageHeader) -> np.ndarray:
        """The inspected image's pixels (``decode_image``), decoded by a worker."""
        return await self._exchange(_Worker.decode, (_DECODE, field, data, header))

    async def _exchange(self, call: Callable[..., Any], message: tuple[Any, ...]) -> Any:
        """``call(worker, message, deadline)`` on an idle worker, on a thread, within the current
        request's deadline.

        A worker is killed and replaced only when its exchange passed the deadline or it died.
        A request cancelled mid-exchange (its client went away) leaves the worker to finish the
        image first: killing it would make every cancelled request cost a process start.
        """
        deadline = current().deadline_at
        while True:
            worker = await self._take(deadline)
            if worker.process.poll() is None:
                break
            self._release(worker, broken=True)  # it died while idle (the OOM killer, say)
        try:
            exchange = self._threads.submit(call, worker, message, deadline)
        except BaseException:
            self._release(worker, broken=False)
            raise
        exchange.add_done_callback(lambda done: self._release(worker, _broke(done)))
        try:
            # A cancelled await leaves the exchange to end on its thread (see above).
            return await asyncio.wrap_future(exchange)
        except TimeoutError:
            raise _timed_out() from None
        except DecoderDiedError:
            raise ApiError.invalid(
                message[1], "not a decodable image (its decoder failed)", "value_error.image"
            ) from None

    async def _take(self, deadline: float | None) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            handed: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
            self._waiting.append(handed)
        try:
            return await asyncio.wait_for(asyncio.shield(handed), _remaining(deadline))
        except (TimeoutError, asyncio.CancelledError) as stopped:
            with self._lock:
                if handed in self._waiting:
                    self._waiting.remove(handed)
                    handed.cancel()
            if handed.done() and not handed.cancelled():
                self._release(handed.result(), broken=False)  # handed over as it gave up
            if isinstance(stopped, TimeoutError):
                raise _timed_out() from None
            raise

    def _release(self, worker: _Worker, broken: bool) -> None:
        """``worker`` to the first request waiting, or idle; or (``broken``) killed and
        replaced, on a thread of its own (a start takes a while)."""
        if broken:
            threading.Thread(target=self._replace, args=(worker,), daemon=True).start()
            return
        with self._lock:
            while self._waiting:
                handed = self._waiting.popleft()
                if not handed.done():
                    handed.get_loop().call_soon_threadsafe(self._hand_over, handed, worker)
                    return
            self._idle.append(worker)

    def _hand_over(self, handed: asyncio.Future[_Worker], worker: _Worker) -> None:
        if handed.done():  # its request gave up meanwhile
            self._release(worker, broken=False)
        else:
            handed.set_result(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        log.warning("an image decoder passed a request's deadline or died; starting another")
        while True:
            fresh = _Worker(self.max_pixels)
            try:
                fresh.wait_ready()
                break
            except (OSError, TimeoutError, DecoderDiedError) as exc:
                log.error("could not start an image decoder (%s); retrying", exc)
                time.sleep(1)
        with self._lock:
            self._workers[self._workers.index(worker)] = fresh
        self._release(fresh, broken=False)

    def close(self) -> None:
        for worker in self._workers:
            worker.kill()
        self._threads.shutdown(wait=False)


def _broke(exchange: Future[Any]) -> bool:
    """Whether the worker of a finished exchange must be replaced: it passed the deadline (and
    may still be decoding) or died. A client's bad image (``ApiError``) leaves it sound."""
    error = exchange.exception()
    return isinstance(error, TimeoutError | DecoderDiedError)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.perf_counter())


def _timed_out() -> ApiError:
    return ApiError.unavailable("the request's deadline passed while its image was decoded")


# -- the worker process --------------------------------------------------------------------------
def _serve(fd: int, max_pixels: int) -> None:
    """Answers the parent's messages until it goes away."""
    parent = socket.socket(fileno=fd)
    conn = Connection(os.dup(fd))
    conn.send((_READY, None))
    while True:
        try:
            kind, field, data, *header = conn.recv()
        except (EOFError, OSError):
            return  # the runner is gone
        try:
            if kind == _INSPECT:
                found = inspect_image(data, field, max_pixels)
                conn.send(("header", (found.format, found.width, found.height)))
            else:
                picture = decode_image(data, field, max_pixels, *header)
                conn.send(("shape", picture.shape))
                _send_pixels(parent, picture)
        except ApiError as error:
            conn.send(("error", error.to_wire()))
        del data, header


def _send_pixels(parent: socket.socket, picture: np.ndarray) -> None:
    """``picture`` copied into a new memory file, whose descriptor goes to the parent."""
    fd = os.memfd_create("face-image", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, picture.nbytes)
        with mmap.mmap(fd, picture.nbytes, flags=_MAPPED) as pixels:
            np.copyto(np.frombuffer(pixels, np.uint8).reshape(picture.shape), picture)
        socket.send_fds(parent, [b"p"], [fd])
    finally:
        os.close(fd)


if __name__ == "__main__":
    # The runner's death closes the socket, which ends the loop above. (Not PR_SET_PDEATHSIG:
    # it fires when the thread that started the worker ends, and replacements start on threads.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops the server, which stops this
    threading.current_thread().name = "face-decoder"
    _serve(int(sys.argv[1]), int(sys.argv[2]))
