"""The two models as the service runs them, each on whole batches: insightface's SCRFD detector
(``BatchedDetector``) and its ArcFace recognizer (``BatchedRecognizer``). The backends
(``backend.py``) call them directly; ``engine.py`` builds them from a pack.

SCRFD on whole batches of images in one forward pass.

insightface's SCRFD graphs declare a batch of 1, and its ``SCRFD`` class runs one image at a
time. Their heads end in ``Transpose(perm=[2, 3, 0, 1])`` and ``Reshape([-1, k])``, so the same
graph with a dynamic batch dimension computes a batch correctly, each output's rows ordered
(position, image, anchor): taking every image's rows back out gives exactly the batch-1 outputs
(bit for bit on CPU; checked again on every start, see ``BatchedDetector._check_batching``). The
decoding after the forward pass is insightface's: its anchor layout, ``distance2bbox``,
``distance2kps`` and ``SCRFD.nms``, per image.

On CUDA the graph also takes the letterboxed uint8 BGR canvases as they are and normalizes them
itself (insightface's ``blobFromImage`` arithmetic, in the graph), so the runner's CPU does no
per-pixel work; on CPU OpenCV's ``blobFromImages`` was as fast or faster (benchmarks/README.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from insightface.model_zoo.arcface_onnx import ArcFaceONNX
from insightface.model_zoo.scrfd import SCRFD, distance2bbox, distance2kps
from onnx import TensorProto, helper

from face_api.inference.buckets import batch_buckets, padded_to_bucket
from face_api.ops.runner_hop import BOX, DETECTION_WIDTH, LANDMARKS, SCORE

log = logging.getLogger("face_api.runner")

UINT8_INPUT = "images"


def with_dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with its batch dimension (input axis 0, every output's axis 0) left open."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    for output in model.graph.output:
        output.type.tensor_type.shape.dim[0].dim_param = "rows"
    return model


def with_uint8_bgr_input(model: onnx.ModelProto, mean: float, std: float) -> onnx.ModelProto:
    """The graph fed (N, H, W, 3) uint8 BGR images: it casts, normalizes as ``(x - mean) / std``
    (as ``cv2.dnn.blobFromImage(img, 1 / std, size, (mean,) * 3, swapRB=True)`` does), swaps to
    RGB and transposes to NCHW before its first layer."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    original = graph.input[0].name
    graph.initializer.extend(
        [
            helper.make_tensor("pre_mean", TensorProto.FLOAT, [], [mean]),
            helper.make_tensor("pre_scale", TensorProto.FLOAT, [], [1.0 / std]),
            helper.make_tensor("pre_rgb", TensorProto.INT64, [3], [2, 1, 0]),
        ]
    )
    steps = [
        helper.make_node("Cast", [UINT8_INPUT], ["pre_float"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["pre_float", "pre_mean"], ["pre_centered"]),
        helper.make_node("Mul", ["pre_centered", "pre_scale"], ["pre_scaled"]),
        helper.make_node("Gather", ["pre_scaled", "pre_rgb"], ["pre_rgb_hwc"], axis=3),
        helper.make_node("Transpose", ["pre_rgb_hwc"], [original], perm=[0, 3, 1, 2]),
    ]
    for node in reversed(steps):
        graph.node.insert(0, node)
    image_input = helper.make_tensor_value_info(
        UINT8_INPUT, TensorProto.UINT8, ["batch", "height", "width", 3]
    )
    del graph.input[0]
    graph.input.insert(0, image_input)
    return model


class BatchedDetector:
    """One SCRFD model: ``detect`` takes (N, S, S, 3) letterboxed BGR canvases and answers each
    canvas's faces as (K, 15) rows in canvas pixels, best score first, after NMS."""

    def __init__(
        self,
        reference: SCRFD,
        providers: Sequence[Any],
        options: ort.SessionOptions,
        size: int,
        max_batch: int,
        normalize_in_graph: bool,
        pad_to_buckets: bool,
    ) -> None:
        # insightface's own class for this file: what it reads from the graph (strides, anchors,
        # keypoints, normalization) and its NMS.
        self.reference = reference
        self.threshold = float(reference.det_thresh)  # the lowest detection score kept
        self.size = size
        self.max_batch = max_batch
        self.normalize_in_graph = normalize_in_graph
        self.pad_to_buckets = pad_to_buckets
        model = with_dynamic_batch(onnx.load(reference.model_file))
        if normalize_in_graph:
            model = with_uint8_bgr_input(model, reference.input_mean, reference.input_std)
        self.session = ort.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=list(providers)
        )
        self.input_name = self.session.get_inputs()[0].name
        self._centers: dict[int, np.ndarray] = {}
        self._check_batching()

    @property
    def nms_threshold(self) -> float:
        return float(self.reference.nms_thresh)

    @property
    def batch_sizes(self) -> list[int]:
        """The batch shapes a pass may have (all run once at start-up on CUDA)."""
        return batch_buckets(self.max_batch) if self.pad_to_buckets else [1]

    # -- running ----------------------------------------------------------------------------
    def detect(self, canvases: np.ndarray) -> list[np.ndarray]:
        return [self.decode(outputs) for outputs in self.forward_images(canvases)]

    def forward_images(self, canvases: np.ndarray) -> list[list[np.ndarray]]:
        """Each canvas's raw outputs, in passes of up to ``max_batch`` canvases (``decode``
        turns them into faces, on any thread: the runner decodes while the next pass runs)."""
        per_image: list[list[np.ndarray]] = []
        for start in range(0, len(canvases), self.max_batch):
            chunk = canvases[start : start + self.max_batch]
            outputs = self.forward(
                padded_to_bucket(chunk, self.max_batch) if self.pad_to_buckets else chunk
            )
            per_image += [[o[i] for o in outputs] for i in range(len(chunk))]
        return per_image

    def forward(self, canvases: np.ndarray) -> list[np.ndarray]:
        """The raw outputs per image: a list over outputs of (N, rows, width) arrays."""
        if self.normalize_in_graph:
            feed = np.ascontiguousarray(canvases)
        else:
            reference = self.reference
            feed = cv2.dnn.blobFromImages(
                list(canvases),
                1.0 / reference.input_std,
                (self.size, self.size),
                (reference.input_mean,) * 3,
                swapRB=True,
            )
        outputs = self.session.run(None, {self.input_name: feed})
        return [self._per_image(output, len(canvases)) for output in outputs]

    def _per_image(self, output: np.ndarray, images: int) -> np.ndarray:
        if output.ndim == 3:  # a graph exported with a batch axis already
            return output
        width = output.shape[-1]
        anchors = self.reference._num_anchors
        # rows are (position, image, anchor): move the image axis first
        return (
            output.reshape(-1, images, anchors, width)
            .transpose(1, 0, 2, 3)
            .reshape(images, -1, width)
        )

    # -- insightface's decoding, per image ----------------------------------------------------
    def _anchor_centers(self, stride: int) -> np.ndarray:
        """As ``SCRFD.forward`` lays them out: (row, column, anchor), in canvas pixels."""
        if stride not in self._centers:
            cells = self.size // stride
            grid = np.stack(np.mgrid[:cells, :cells][::-1], axis=-1).astype(np.float32)
            centers = (grid * stride).reshape(-1, 2)
            anchors = self.reference._num_anchors
            if anchors > 1:
                centers = np.stack([centers] * anchors, axis=1).reshape(-1, 2)
            self._centers[stride] = centers
        return self._centers[stride]

    def decode(self, outputs: list[np.ndarray]) -> np.ndarray:
        """One image's outputs to (K, ``DETECTION_WIDTH``) detection rows, as ``SCRFD.detect`` at
        scale 1."""
        reference = self.reference
        levels = reference.fmc
        scores, boxes, points = [], [], []
        for level, stride in enumerate(reference._feat_stride_fpn):
            level_scores = outputs[level]
            hits = np.where(level_scores >= self.threshold)[0]
            centers = self._anchor_centers(stride)[hits]
            scores.append(level_scores[hits])
            boxes.append(distance2bbox(centers, outputs[level + levels][hits] * stride))
            if reference.use_kps:
                # (M, 10): x, y of the 5 landmarks
                points.append(distance2kps(centers, outputs[level + 2 * levels][hits] * stride))
        score_column = np.vstack(scores)
        if not len(score_column):
            return np.zeros((0, DETECTION_WIDTH), np.float32)
        order = np.argsort(-score_column.ravel(), kind="stable")
        candidates = np.hstack((np.vstack(boxes), score_column)).astype(np.float32)[order]
        keep = reference.nms(candidates)
        rows = np.zeros((len(keep), DETECTION_WIDTH), np.float32)
        rows[:, BOX] = candidates[keep, :4]
        rows[:, SCORE] = candidates[keep, 4]
        if reference.use_kps:
            rows[:, LANDMARKS] = np.vstack(points)[order][keep]
        return rows

    # -- start-up ---------------------------------------------------------------------------
    def _check_batching(self) -> None:
        """Two different canvases in one pass must give what each gives alone; a graph laid out
        otherwise than insightface's exports runs one image a pass instead of wrong answers."""
        if self.max_batch == 1:
            return
        rng = np.random.default_rng(0)
        pair = rng.integers(0, 256, (2, self.size, self.size, 3), dtype=np.uint8)
        together = self.forward(pair)
        alone = [self.forward(pair[i : i + 1]) for i in range(2)]
        for i in range(2):
            for batched, single in zip(together, alone[i], strict=True):
                # Loose enough for another cuDNN algorithm per batch size; rows of another image
                # or anchor differ by far more.
                if not np.allclose(batched[i], single[0], rtol=1e-2, atol=1e-2):
                    log.warning(
                        "detector %s: a batched pass differs from single passes; running one "
                        "image a pass",
                        self.reference.model_file,
                    )
                    self.max_batch = 1
                    return

    def warm_up(self) -> None:
        """Run every batch shape once, so no request pays for a first run (or a cuDNN search)."""
        for n in self.batch_sizes:
            self.forward(np.zeros((n, self.size, self.size, 3), np.uint8))


class BatchedRecognizer:
    """insightface's ``ArcFaceONNX`` (on an ONNX Runtime session, or OpenVINO's) on batches of
    aligned crops, up to ``max_batch`` a pass."""

    def __init__(self, model: ArcFaceONNX, max_batch: int) -> None:
        self.model = model
        self.session: Any = model.session
        self.max_batch = max_batch
        self.crop_size = int(model.input_size[0])
        self.embedding_size = int(model.output_shape[-1])
        # On CUDA every new batch size is a new input shape: a cuDNN algorithm search and new
        # kernels (measured on an H100: a 161-face request took 0.86 s instead of 0.1 s). So
        # batches are padded to powers of two, all warmed up at start. On CPU padding only costs.
        self.pads_batches = "CUDAExecutionProvider" in self.session.get_providers()

    @property
    def runtime(self) -> str:
        return self.session.get_providers()[0]

    def features(self, crops: np.ndarray) -> np.ndarray:
        """The recognizer's raw (N, D) outputs for (N, S, S, 3) uint8 aligned BGR crops: their
        norms are a quality signal, lost once normalized."""
        if len(crops) == 0:
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        if not self.pads_batches:
            return np.asarray(self.model.get_feat(list(crops)), np.float32)
        out = []
        for start in range(0, len(crops), self.max_batch):
            chunk = crops[start : start + self.max_batch]
            padded = padded_to_bucket(chunk, self.max_batch)
            out.append(self.model.get_feat(list(padded))[: len(chunk)])
        return np.asarray(np.concatenate(out), np.float32)

    def warm_up(self) -> None:
        """Every input shape once, so no request pays for a first run (or a cuDNN search)."""
        for n in batch_buckets(self.max_batch) if self.pads_batches else [1]:
            self.features(np.zeros((n, self.crop_size, self.crop_size, 3), dtype=np.uint8))
