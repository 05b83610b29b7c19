"""The HTTP edge: wire schemas, middleware, the docs page, contract errors, and the one hop to the
runner. Knows the pipeline's results and ``ops``; never the models, never the galleries."""
