"""The model side without BentoML: ONNX Runtime sessions of one insightface pack, and their calls.

Built from insightface's own model classes (``SCRFD``, ``ArcFaceONNX`` via ``model_zoo.get_model``),
so preprocessing, anchor decoding and NMS are insightface's; both run whole batches
(``models.py``). ``backend.py`` calls the two models, behind continuous batchers in the runner
(``runners/insightface_runner.py``) or directly in the benchmarks.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import insightface
import numpy as np
import onnxruntime as ort
from insightface.model_zoo import model_zoo
from insightface.model_zoo.arcface_onnx import ArcFaceONNX
from insightface.model_zoo.scrfd import SCRFD

from face_api.inference.models import BatchedDetector, BatchedRecognizer
from face_api.inference.vectors import normalize
from face_api.ops import environment
from face_api.ops.settings import Settings

log = logging.getLogger("face_api.runner")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# A good face, aligned: a well-lit frontal crop that insightface ships in its wheel. Its embedding
# norm is the recognizer's scale for the quality's norm (w600k_mbf: 23.2, the identity frames'
# median).
REFERENCE_FACE = Path(insightface.__file__).parent / "data" / "images" / "Tom_Hanks_54745.png"


class DeviceUnavailableError(RuntimeError):
    """``FACE_DEVICE=cuda`` asked for a GPU that ONNX Runtime cannot use."""


class ModelPackError(RuntimeError):
    """The pack folder lacks a detector or a recognizer insightface can route."""


def requested_providers(settings: Settings, available: Sequence[str]) -> list[Any]:
    """The provider list to ask ONNX Runtime for, from the device setting.

    ``cpu``: CPU only. ``cuda``: CUDA first, refusing to start when ONNX Runtime has no CUDA
    provider.
    ``auto``: CUDA when offered, else CPU with a loud warning (never a silent fallback).
    """
    if settings.device == "cpu":
        return [CPU]
    if CUDA not in available:
        reason = (
            f"ONNX Runtime {ort.__version__} offers no {CUDA} (available: {', '.join(available)}); "
            "install `onnxruntime-gpu` as the only ONNX Runtime (the project's `gpu` extra) on a "
            "machine with an NVIDIA driver"
        )
        if found := environment.conflicts():
            reason += f". {environment.report(found)}"
        if settings.device == "cuda":
            raise DeviceUnavailableError(f"FACE_DEVICE=cuda but {reason}.")
        log.warning("!!! FACE_DEVICE=auto: falling back to CPU inference: %s. !!!", reason)
        return [CPU]
    cuda_options = {
        "device_id": settings.cuda_device_id,
        "cudnn_conv_algo_search": settings.cudnn_conv_algo_search,
    }
    return [(CUDA, cuda_options), CPU]


def preload_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries of the ``nvidia-*`` wheels before the first CUDA session.

    ONNX Runtime's CUDA provider has no RUNPATH to them (the CUDA 13 wheels keep them in
    ``site-packages/nvidia/cu13/lib``): without this it cannot find ``libcublasLt.so.13``, even on
    a GPU host. What ``preload_dlls`` cannot load it prints; here each such line is a warning. The
    driver's ``libcuda.so.1`` is not among them: the provider itself loads it, and names it when
    it is missing.
    """
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ort.preload_dlls()
    for line in printed.getvalue().splitlines():
        if line.strip():
            log.warning("loading CUDA libraries: %s", line.strip())


def cuda_provider_failure() -> str:
    """Why ONNX Runtime's CUDA provider did not load, naming the missing library when the
    dynamic loader can (it stops at the first one)."""
    library = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        reason = f"its library does not load: {exc}"
        if "libcuda.so" in str(exc):
            reason += (
                ". libcuda.so.1 is the NVIDIA driver's: run on a host with the driver (580 or "
                "newer, for CUDA 13), and give a container the GPU (`docker run --gpus all`)"
            )
        return reason + "."
    return "ONNX Runtime could not start CUDA or cuDNN (see its log above)."


def session_options(settings: Settings, cuda: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if cuda or not settings.ort_spinning:
        # The CUDA provider barely uses CPU threads; idle threads spinning after each run would
        # only take cores from the API workers' decoding and alignment.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


class FaceEngine:
    """One pack's detector and recognizer, ready to run on the configured device.

    Building one loads both models, warms up every input shape and checks the device: it takes
    seconds, so a process makes one and keeps it.
    """

    def __init__(self, pack_dir: Path, settings: Settings, pack_name: str = "") -> None:
        self.pack_dir: Path = pack_dir
        self.settings: Settings = settings
        # The pack's name in the model store (the folder is a version id).
        self.pack_name: str = pack_name or pack_dir.name
        available = ort.get_available_providers()
        wanted = requested_providers(settings, available)
        on_cuda = wanted[0] != CPU
        if on_cuda:
            preload_cuda_libraries()
        options = session_options(settings, cuda=on_cuda)
        scrfd, arcface = route_pack(pack_dir)
        # The files' names, as the pack's metadata and the info endpoints report them.
        self.detector_file: str = Path(scrfd.model_file).name
        self.recognizer_file: str = Path(arcface.model_file).name
        scrfd.prepare(0, det_thresh=settings.det_threshold)
        self.detector: BatchedDetector = BatchedDetector(
            scrfd,
            wanted,
            options,
            size=settings.det_size,
            max_batch=settings.detect_batch_size(on_cuda),
            normalize_in_graph=on_cuda,
            pad_to_buckets=on_cuda,
        )
        self.recognizer: BatchedRecognizer = BatchedRecognizer(
            self._recognizer(arcface.model_file, wanted, options), settings.embed_max_batch_size
        )
        self._warm_up()
        self.norm_reference: float | None = self._norm_reference()
        # What the sessions run on, which is not always what was asked for: ONNX Runtime falls
        # back to CPU when the CUDA provider does not load.
        self.providers: list[str] = self._providers_in_use()
        self.device: str = "cuda" if CUDA in self.providers else "cpu"
        if settings.device == "cuda" and self.device != "cuda":
            raise DeviceUnavailableError(
                f"FACE_DEVICE=cuda but the sessions run on {self.providers}: "
                f"{cuda_provider_failure()}"
            )
        if settings.device == "auto" and self.device == "cpu" and CUDA in available:
            log.warning("!!! FACE_DEVICE=auto: CUDA is offered but failed; running on CPU. !!!")
        log.info(
            "model pack %s: detector %s (up to %d images a pass), recognizer %s, providers in "
            "use %s, %d intra-op threads",
            self.pack_name,
            self.detector_file,
            self.detector.max_batch,
            self.recognizer_file,
            self.providers,
            settings.intra_op_threads,
        )

    def _recognizer(
        self, model_file: str, providers: list[Any], options: ort.SessionOptions
    ) -> ArcFaceONNX:
        """insightface's ArcFaceONNX on OpenVINO (CPU, when installed and asked for) or on an
        ONNX Runtime session with the engine's providers."""
        from face_api.inference import openvino_session

        wants_openvino = providers == [CPU] and self.settings.cpu_recognizer == "openvino"
        if wants_openvino and openvino_session.available():
            threads = self.settings.intra_op_threads
            session: Any = openvino_session.OpenVINOSession(model_file, threads)
        else:
            if wants_openvino:
                log.warning(
                    "FACE_CPU_RECOGNIZER=openvino but openvino is not installed: using "
                    "ONNX Runtime's CPU provider for recognition"
                )
            session = ort.InferenceSession(model_file, sess_options=options, providers=providers)
        return ArcFaceONNX(model_file=model_file, session=session)

    def _providers_in_use(self) -> list[str]:
        in_use: list[str] = []
        for session in (self.detector.session, self.recognizer.session):
            for provider in session.get_providers():
                if provider not in in_use:
                    in_use.append(provider)
        return in_use

    def _warm_up(self) -> None:
        """Run every input shape once, so no request pays for a first run (or a cuDNN search)."""
        self.detector.warm_up()
        self.recognizer.warm_up()

    def _norm_reference(self) -> float | None:
        """The recognizer's embedding norm for ``REFERENCE_FACE``: norms are on each model's own
        scale, and the quality reads a face's norm against this one (None: the file is missing)."""
        crop = cv2.imread(str(REFERENCE_FACE))
        if crop is None:
            log.warning("no face at %s: quality reads norms on w600k_mbf's scale", REFERENCE_FACE)
            return None
        size = self.recognizer.crop_size
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        return float(np.linalg.norm(self.recognizer.features(crop[np.newaxis])[0]))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 aligned BGR crops -> (N, D) float32 unit embeddings."""
        return normalize(self.recognizer.features(crops))


def route_pack(pack_dir: Path) -> tuple[SCRFD, ArcFaceONNX]:
    """The pack's detector and recognizer, as insightface's model zoo routes its files.

    Routing opens each file on the CPU provider; the sessions that serve are made by the engine.
    """
    models: dict[str, Any] = {}
    for onnx_file in sorted(pack_dir.glob("*.onnx")):
        model = model_zoo.get_model(str(onnx_file), providers=[CPU])
        if model is not None and model.taskname in ("detection", "recognition"):
            models.setdefault(model.taskname, model)
    if "detection" not in models or "recognition" not in models:
        raise ModelPackError(
            f"model pack {pack_dir} needs an SCRFD detector and an ArcFace recognizer "
            f"(.onnx files insightface can route); found {sorted(models) or 'none'}"
        )
    return models["detection"], models["recognition"]
