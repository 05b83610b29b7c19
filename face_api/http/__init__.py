"""The HTTP edge: its layers (one module per job, ``layers.py`` their order), wire schemas, the
endpoints' work, errors as the contract's answers, the docs page, and the one hop to the runner.
Knows the pipeline's results and ``ops``; never the models, never the galleries."""
