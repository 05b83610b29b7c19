"""The model side without BentoML: ONNX Runtime sessions of one insightface pack, and their calls.

Built from insightface's own model classes (``SCRFD``, ``ArcFaceONNX`` via ``model_zoo.get_model``),
so preprocessing, anchor decoding and NMS are insightface's; the detector runs whole batches
(``detector.py``). ``backend.py`` puts it behind continuous batchers, which
``runners/insightface_runner.py`` serves as a BentoML service; the benchmarks call it in process.
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

from face_api.inference.buckets import batch_buckets, padded_to_bucket
from face_api.inference.detector import BatchedDetector
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
        self.recognizer: ArcFaceONNX = self._recognizer(arcface.model_file, wanted, options)
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
            self.detect_max_batch,
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

    @property
    def recognizer_runtime(self) -> str:
        return self.recognizer.session.get_providers()[0]

    # -- properties the API side needs -------------------------------------------------------
    @property
    def crop_size(self) -> int:
        return int(self.recognizer.input_size[0])

    @property
    def embedding_size(self) -> int:
        return int(self.recognizer.output_shape[-1])

    @property
    def detector_threshold(self) -> float:
        """The lowest detection score kept."""
        return self.detector.threshold

    @property
    def nms_threshold(self) -> float:
        return self.detector.nms_threshold

    @property
    def detector_input_shape(self) -> list[Any]:
        """The detector graph's input shape as its file declares it (e.g. ``[1, 3, "?", "?"]``)."""
        return list(self.detector.reference.input_shape)

    @property
    def detect_max_batch(self) -> int:
        """The most canvases a detection pass takes (1 after a failed batching self-check)."""
        return self.detector.max_batch

    @property
    def embed_max_batch(self) -> int:
        """The most crops a recognition pass takes."""
        return self.settings.embed_max_batch_size

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
        shapes = batch_buckets(self.embed_max_batch) if self._pads_batches else [1]
        for n in shapes:
            self.embed(np.zeros((n, self.crop_size, self.crop_size, 3), dtype=np.uint8))

    def _norm_reference(self) -> float | None:
        """The recognizer's embedding norm for ``REFERENCE_FACE``: norms are on each model's own
        scale, and the quality reads a face's norm against this one (None: the file is missing)."""
        crop = cv2.imread(str(REFERENCE_FACE))
        if crop is None:
            log.warning("no face at %s: quality reads norms on w600k_mbf's scale", REFERENCE_FACE)
            return None
        crop = cv2.resize(crop, (self.crop_size, self.crop_size), interpolation=cv2.INTER_AREA)
        return float(np.linalg.norm(self.features(crop[np.newaxis])[0]))

    @property
    def _pads_batches(self) -> bool:
        # On CUDA every new batch size is a new input shape: a cuDNN algorithm search and new
        # kernels (measured on an H100: a 161-face request took 0.86 s instead of 0.1 s). So
        # batches are padded to powers of two, all warmed up at start. On CPU padding only costs.
        return CUDA in self.recognizer.session.get_providers()

    # -- inference ---------------------------------------------------------------------------
    def detect(self, canvases: np.ndarray) -> list[np.ndarray]:
        """(N, S, S, 3) uint8 letterboxed BGR canvases -> per canvas, (K, 15) float32
        detections in canvas pixels, best score first."""
        return self.detector.detect(canvases)

    def forward_canvases(self, canvases: np.ndarray) -> list[list[np.ndarray]]:
        """``detect`` without the decoding: each canvas's raw outputs, in passes of up to
        ``detect_max_batch`` canvases. ``decode`` turns one canvas's into its detections, on any
        thread."""
        return self.detector.forward_images(canvases)

    def decode(self, outputs: list[np.ndarray]) -> np.ndarray:
        """One canvas's raw outputs (from ``forward_canvases``) -> its (K, 15) detections, as
        ``detect`` answers them (anchors, NMS)."""
        return self.detector.decode(outputs)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 aligned BGR crops -> (N, D) float32 unit embeddings."""
        return normalize(self.features(crops))

    def features(self, crops: np.ndarray) -> np.ndarray:
        """The recognizer's raw (N, D) outputs for aligned crops: their norms are a quality
        signal, lost once normalized."""
        if len(crops) == 0:
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        if not self._pads_batches:
            return np.asarray(self.recognizer.get_feat(list(crops)), np.float32)
        most = self.embed_max_batch
        out = []
        for start in range(0, len(crops), most):
            chunk = crops[start : start + most]
            padded = padded_to_bucket(chunk, most)
            out.append(self.recognizer.get_feat(list(padded))[: len(chunk)])
        return np.asarray(np.concatenate(out), np.float32)


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
