"""One-question measurements, each runnable alone (``python -m benchmarks.probes.NAME``)."""
