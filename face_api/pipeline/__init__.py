"""From pixels to faces to features: decoding, face geometry, face quality, features, and the
pipeline that runs them on the models. May use ``inference`` and ``ops``."""
