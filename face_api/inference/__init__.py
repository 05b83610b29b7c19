"""The models on ONNX Runtime (or OpenVINO): the engine of one pack, the batched detector, and the
continuous batcher. Knows nothing of HTTP or the pipeline; may use ``ops``."""
