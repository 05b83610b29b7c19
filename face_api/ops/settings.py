"""Every setting of the service, in one typed place.

No other module reads ``os.environ``: they take a ``Settings`` (usually ``get_settings()``).
Variable names are the contract's (``FACE_API_KEYS``, ``FACE_DEVICE``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, FilePath, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from face_api.ops.limits import MAX_RESULTS

DEFAULT_MODEL_PACK = "buffalo_sc_int8"
# A Milvus server refuses JSON fields over 64 KiB; the default cap keeps well under it.
GALLERY_METADATA_MAX_BYTES = 16 * 1024
# The vector indexes a gallery on a Milvus server may have (Milvus Lite has FLAT only): for each,
# its build and its search parameters, each name -> (default, least, most: Milvus's bounds).
# Defaults measured at a million faces (benchmarks/README.md, "Galleries at a million faces").
IndexParameters = dict[str, tuple[int, int, int]]
GALLERY_INDEXES: dict[str, tuple[IndexParameters, IndexParameters]] = {
    "FLAT": ({}, {}),
    "HNSW": (
        {"M": (16, 2, 2048), "efConstruction": (200, 1, 2**31 - 1)},
        {"ef": (64, 1, 32768)},  # at least the answer's size: the store raises it to maxResults
    ),
    "IVF_FLAT": ({"nlist": (1024, 1, 65536)}, {"nprobe": (32, 1, 65536)}),
}
SERVER_GALLERY_INDEX = "HNSW"
# Settings that were removed, and what took their place.
REMOVED_SETTINGS = {
    name: "sharpness and brightness no longer grade a face (they predicted poorly whether it "
    "would be recognised); the grade's bar is FACE_QUALITY_RECOGNIZABILITY (docs/api.md, Face "
    "quality)"
    for name in ("FACE_QUALITY_SHARPNESS", "FACE_QUALITY_BRIGHTNESS")
}


def available_cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), not the host's count.

    Inside a container limited with ``--cpuset-cpus`` ``os.cpu_count()`` still says the host's
    number, and ONNX Runtime would start that many threads fighting over a few cores.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class GalleryIndex:
    """The vector index new galleries are made with, and the parameters searches pass it."""

    kind: str = "FLAT"
    build: dict[str, int] = field(default_factory=dict)
    search: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, kind: str, build: Mapping[str, int] = {}, search: Mapping[str, int] = {}):  # noqa: B006 - read only
        """``kind`` with the given parameters, its defaults for the others."""
        builds, searches = GALLERY_INDEXES[kind]
        return cls(
            kind,
            {name: build.get(name, default) for name, (default, _, _) in builds.items()},
            {name: search.get(name, default) for name, (default, _, _) in searches.items()},
        )


def default_gallery_dir(environ: Mapping[str, str]) -> Path:
    containerized = environ.get("BENTOML_CONTAINERIZED", "").lower() == "true"
    return Path("/data") if containerized else Path("galleries")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACE_", extra="ignore", populate_by_name=True)

    # --- auth -----------------------------------------------------------------------------
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), repr=False)
    api_keys_file: Path | None = None
    api_auth: Literal["on", "off"] = "on"
    # With key checks off, the Host names served besides this machine's addresses and
    # localhost (comma-separated): a name nobody listed may be an attacker's (DNS rebinding).
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    # Keys that open GET /metrics only (what Prometheus holds), beside the API keys, which open
    # it too: comma-separated, or a file with one key a line.
    metrics_keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), repr=False)
    metrics_keys_file: Path | None = None

    # --- model ----------------------------------------------------------------------------
    model: str = DEFAULT_MODEL_PACK
    # Where `python -m face_api.inference.packs import NAME` fetches NAME.zip (a mirror of
    # insightface's model-zoo release); unset: insightface's own release URL.
    pack_download_url: str | None = None
    device: Literal["auto", "cuda", "cpu"] = "auto"
    det_size: int = Field(640, ge=64, le=2048, multiple_of=32)
    det_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # On CPU the recognizer runs on OpenVINO when it is installed (faster, same embeddings).
    cpu_recognizer: Literal["openvino", "onnxruntime"] = "openvino"

    # --- galleries ------------------------------------------------------------------------
    # Embedded Milvus Lite keeps every gallery in this folder; or set a Milvus server's URI
    # (``http://milvus:19530``) and, if it needs one, its token (``user:password``).
    # Unset: ./galleries, or /data in a container built from the Bento (BentoML's Dockerfile sets
    # BENTOML_CONTAINERIZED; the image makes /data for its user, to be mounted as a volume).
    gallery_dir: Path = Field(default_factory=lambda: default_gallery_dir(os.environ))
    gallery_uri: str | None = None
    gallery_token: str | None = Field(default=None, repr=False)
    # The token in a file instead (a mounted Secret), so it is in no process's environment.
    gallery_token_file: FilePath | None = None
    # An enrolled face's metadata, serialized as JSON (UTF-8), at most this many bytes.
    gallery_metadata_max_bytes: int = Field(GALLERY_METADATA_MAX_BYTES, ge=2, le=64 * 1024)
    # The vector index of galleries made on a Milvus server, and its build and search parameters
    # (JSON objects; a parameter left out takes its default in GALLERY_INDEXES). Unset: HNSW on a
    # server; Milvus Lite has FLAT only (exact). A gallery keeps the index it was made with.
    gallery_index: Literal["HNSW", "IVF_FLAT", "FLAT"] | None = None
    gallery_index_params: dict[str, int] = Field(default_factory=dict)
    gallery_search_params: dict[str, int] = Field(default_factory=dict)

    # --- face quality (returnQuality, enrollment's qualityFilter) ----------------------------
    # Each pair: the least a face needs to be graded medium, then high (pose: the most yaw or
    # pitch), as JSON (`FACE_QUALITY_FACE_PX='[16, 32]'`). AUTO enrolls a face graded medium or
    # high. Chosen on the outcome: each identity frame degraded 51 ways, against the cosine of
    # its embedding to the same frame's clean one (benchmarks/README.md, "Face quality").
    # The expected cosine to the same face in good condition (face_api/pipeline/quality.py):
    # the medium bar refuses 90% or more of the faces below 0.5 and keeps 90% or more of those
    # from 0.7, every clean frame enrolled; the high bar is above every face below 0.5.
    quality_recognizability: tuple[float, float] = (0.655, 0.84)
    # The box's shorter side, pixels: a face under 16 px lost its identity a third of the time,
    # from 18 px never; from 32 px every face kept 0.83 or more.
    quality_face_px: tuple[float, float] = (16.0, 32.0)
    quality_confidence: tuple[float, float] = (0.55, 0.65)  # the detector's score
    quality_pose_deg: tuple[float, float] = (70.0, 40.0)  # the most |yaw| or |pitch|

    # --- ONNX Runtime ---------------------------------------------------------------------
    intra_op_threads: int = Field(default_factory=available_cpu_count, ge=1)
    # Idle intra-op threads spinning after a run: faster back-to-back runs, but they take cores
    # from the API workers on the same machine. Measured on 2 cores, /v1/feature: off gives
    # 13.2 req/s with 8 clients against 11.8, for +9 ms sequential. Always off on CUDA.
    ort_spinning: bool = False
    cuda_device_id: int = Field(0, ge=0)
    # Every input shape is run once at start-up, so the exhaustive search is paid there only.
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "EXHAUSTIVE"

    # --- batching: the most rows one forward pass takes --------------------------------------
    embed_max_batch_size: int = Field(64, ge=1)
    # Unset: 32 images a pass on CUDA; 1 on CPU, where a batched pass was no faster per image
    # (13% slower at 8 on this project's 2-core machine, benchmarks/README.md).
    detect_max_batch_size: int | None = Field(None, ge=1)

    # --- limits ---------------------------------------------------------------------------
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    # Request bodies one API worker holds at once, in bytes (a 429 past it): each costs about six
    # times its size in memory at its peak. Unset: four bodies at the limit.
    max_body_bytes_in_flight: int | None = Field(None, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1)
    # Decoded pixels one runner worker holds at once, over all requests (a 429 past it). Unset:
    # four images at the pixel limit (480 MB as 8-bit BGR at 40 MP); at least two, since a
    # score compares two images.
    max_pixels_in_flight: int | None = Field(None, ge=1)
    max_results_cap: int = Field(
        MAX_RESULTS, ge=1, le=MAX_RESULTS
    )  # a lower cap than the contract's
    request_timeout_s: int = Field(60, ge=1)
    # POSTs served at once by one API worker; more are answered 429 at once. Each holds at most
    # one body (max_body_bytes) in the worker and one decoded image (max_pixels) in the runner.
    # Unset: 32 per CPU this process may use, shared by the API workers.
    max_concurrency: int | None = Field(None, ge=1)
    # API worker processes. They only speak HTTP (JSON, base64) and call the runner, which
    # decodes and runs the models; unset: one per 4 CPUs this process may use, at least 1.
    api_workers: int | None = Field(None, ge=1)
    # Runner processes (each loads the models; on one GPU they share it). One is the default;
    # a second helps where the stage breakdown shows the runner's own Python as the limit.
    runner_workers: int = Field(1, ge=1)
    # Threads of the runner for decoding, letterboxing and aligning (OpenCV releases the GIL).
    image_threads: int = Field(default_factory=available_cpu_count, ge=1)

    @model_validator(mode="after")
    def _refuse_removed_settings(self) -> Settings:
        """A setting that no longer means anything refuses to start rather than be ignored: the
        operator who set it meant to move a bar that is gone."""
        for name, instead in REMOVED_SETTINGS.items():
            if name in os.environ:
                raise ValueError(f"{name} was removed: {instead}")
        return self

    @model_validator(mode="after")
    def _derive_worker_defaults(self) -> Settings:
        cpus = available_cpu_count()
        if self.api_workers is None:
            self.api_workers = max(1, cpus // 4)
        if self.max_concurrency is None:
            self.max_concurrency = max(32, 32 * cpus // self.api_workers)
        if self.max_body_bytes_in_flight is None:
            self.max_body_bytes_in_flight = 4 * self.max_body_bytes
        if self.max_body_bytes_in_flight < self.max_body_bytes:
            raise ValueError(
                "FACE_MAX_BODY_BYTES_IN_FLIGHT must be at least FACE_MAX_BODY_BYTES: a body at "
                "the limit must fit"
            )
        if self.max_pixels_in_flight is None:
            self.max_pixels_in_flight = 4 * self.max_pixels
        if self.max_pixels_in_flight < 2 * self.max_pixels:
            raise ValueError(
                "FACE_MAX_PIXELS_IN_FLIGHT must be at least twice FACE_MAX_PIXELS: a score "
                "request holds two images"
            )
        return self

    @model_validator(mode="after")
    def _one_gallery_token(self) -> Settings:
        if self.gallery_token is not None and self.gallery_token_file is not None:
            raise ValueError("set FACE_GALLERY_TOKEN or FACE_GALLERY_TOKEN_FILE, not both")
        return self

    def load_gallery_token(self) -> str | None:
        """The Milvus server's token (``user:password``): ``FACE_GALLERY_TOKEN``, else the
        stripped content of ``FACE_GALLERY_TOKEN_FILE``."""
        if self.gallery_token_file is None:
            return self.gallery_token
        token = self.gallery_token_file.read_text(encoding="utf-8").strip()
        if not token:
            raise ValueError(f"FACE_GALLERY_TOKEN_FILE ({self.gallery_token_file}) is empty")
        return token

    @model_validator(mode="after")
    def _check_gallery_index(self) -> Settings:
        """An index Milvus Lite cannot build, or a parameter the index does not take or outside
        Milvus's bounds, refuses to start: every new gallery's first enroll would fail."""
        if self.gallery_uri is None and self.gallery_index not in (None, "FLAT"):
            raise ValueError(
                f"FACE_GALLERY_INDEX={self.gallery_index} needs a Milvus server "
                "(FACE_GALLERY_URI): Milvus Lite has FLAT only"
            )
        kind = self.gallery_vector_index().kind
        builds, searches = GALLERY_INDEXES[kind]
        for variable, given, known in (
            ("FACE_GALLERY_INDEX_PARAMS", self.gallery_index_params, builds),
            ("FACE_GALLERY_SEARCH_PARAMS", self.gallery_search_params, searches),
        ):
            for name, value in given.items():
                if name not in known:
                    takes = ", ".join(known) or "none"
                    raise ValueError(f"{variable}: {kind} takes no {name!r} (it takes: {takes})")
                _, least, most = known[name]
                if not least <= value <= most:
                    raise ValueError(f"{variable}: {name} must be {least} to {most}, not {value}")
        return self

    def gallery_vector_index(self) -> GalleryIndex:
        """The index new galleries are made with: the setting's, else HNSW on a Milvus server
        and FLAT in Milvus Lite."""
        kind = self.gallery_index or (SERVER_GALLERY_INDEX if self.gallery_uri else "FLAT")
        return GalleryIndex.of(kind, self.gallery_index_params, self.gallery_search_params)

    def gallery_store_uri(self) -> str:
        """Where the galleries are: the Milvus server's URI, else the embedded Milvus Lite's
        database file in ``gallery_dir``."""
        return self.gallery_uri or str(self.gallery_dir.resolve() / "galleries.db")

    def detect_batch_size(self, on_cuda: bool) -> int:
        if self.detect_max_batch_size is not None:
            return self.detect_max_batch_size
        return 32 if on_cuda else 1

    @field_validator("api_keys", "metrics_keys", "allowed_hosts", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    def load_api_keys(self) -> frozenset[str]:
        """Keys from ``FACE_API_KEYS`` and, if set, ``FACE_API_KEYS_FILE`` (one a line)."""
        return _keys(self.api_keys, self.api_keys_file)

    def load_metrics_keys(self) -> frozenset[str]:
        """Keys from ``FACE_METRICS_KEYS`` and, if set, ``FACE_METRICS_KEYS_FILE``."""
        return _keys(self.metrics_keys, self.metrics_keys_file)

    @property
    def auth_enabled(self) -> bool:
        return self.api_auth == "on"


def _keys(listed: tuple[str, ...], file: Path | None) -> frozenset[str]:
    keys = set(listed)
    if file is not None:
        text = file.read_text(encoding="utf-8")
        keys.update(line.strip() for line in text.splitlines() if line.strip())
    return frozenset(keys)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
