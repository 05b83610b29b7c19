"""An ONNX Runtime-shaped session over OpenVINO, for the recognizer on CPU.

On this project's 2-core CPU, OpenVINO runs the ArcFace recognizer on the same ONNX file about
1.5x faster than ONNX Runtime's CPU provider, with embeddings equal to ONNX Runtime's (cosine
0.9999998 at f32). Recognition is nearly all the cost of a many-face request, so the CPU path
uses it there. The adapter gives insightface's ``ArcFaceONNX`` the few session methods it calls
(``get_inputs``, ``get_outputs``, ``run``), so its preprocessing stays insightface's own.
Precision is pinned to f32: OpenVINO's CPU default can be bf16 (cosine about 0.9986).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PROVIDER_NAME = "OpenVINO CPU (f32)"


@dataclass(frozen=True)
class _Port:
    name: str
    shape: list[Any]
    type: str = "tensor(float)"


def available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVINOSession:
    def __init__(self, model_file: str, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(model_file)
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
        }
        self._compiled = core.compile_model(model, "CPU", config)
        # Most requests embed one face: a copy compiled for batch 1 alone runs it about 8%
        # faster than the dynamic-batch graph (same outputs, benchmarks/README.md).
        self._single = None
        batch, *rest = list(model.inputs[0].get_partial_shape())
        if not batch.is_static and all(d.is_static for d in rest):
            single = core.read_model(model_file)
            single.reshape({single.inputs[0].get_any_name(): [1, *(d.get_length() for d in rest)]})
            self._single = core.compile_model(single, "CPU", config)

        def ports(values: Any) -> list[_Port]:
            return [
                _Port(
                    v.get_any_name(),
                    [d.get_length() if d.is_static else None for d in v.get_partial_shape()],
                )
                for v in values
            ]

        self._inputs = ports(model.inputs)
        self._outputs = ports(model.outputs)
        self._output_names = [port.name for port in self._outputs]

    def get_inputs(self) -> list[_Port]:
        return self._inputs

    def get_outputs(self) -> list[_Port]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return [PROVIDER_NAME]

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch = len(next(iter(feed.values())))
        compiled = self._single if batch == 1 and self._single is not None else self._compiled
        request = compiled.create_infer_request()
        inputs = {}
        for name, value in feed.items():
            inputs[name] = np.ascontiguousarray(value)
        by_name = {}
        for port, value in request.infer(inputs).items():
            by_name[port.get_any_name()] = value
        out = []
        for name in output_names or self._output_names:
            out.append(np.asarray(by_name[name]))
        return out
