"""The models on ONNX Runtime (or OpenVINO): the engine of one pack, the batched detector, the
continuous batcher and the backend that puts the engine behind it. Knows nothing of HTTP or the
pipeline; may use ``ops``."""
