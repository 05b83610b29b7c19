"""The speed harness's parts; ``benchmarks/run.py`` puts them together in one command."""
