"""Every use this project makes of BentoML's private modules, each in one place, with what it
relies on. None is BentoML's public API, and BentoML is pinned exactly (pyproject.toml) because an
upgrade may move or change any of them; ``tests/unit/test_bentoml_private.py`` checks each against
the installed BentoML and says which assumption broke. Checked on 1.4.40, the newest 1.4 release
(and the newest BentoML) on 2026-12-07: nothing broke; to try a newer one, install it over the pin
and run that test first.

- The traffic metrics middleware (``bentoml._internal.server.http.instruments``): BentoML looks
  ``RunnerTrafficMetricsMiddleware`` up in that module each time it builds a service's app, and
  puts it outermost. ``face_api/http/observability.py`` swaps in a subclass that labels requests
  by route and refuses websocket handshakes before any metric sees them.
- The BentoML home (``BentoMLContainer.bentoml_home``), under which the model store lives: the
  message for a pack that is not imported names the store.
- The loggers through which BentoML reports a request it could not take (``log_exception`` of
  ``bentoml._internal.server.http_app``, and ``bentoml.serve``): ``face_api/ops/logs.py`` keeps
  client data out of their lines.
- The user and home of BentoML's images (``bentoml._internal.container.generate``): the Helm chart
  runs as that user and mounts under that home (``tests/unit/test_kubernetes.py`` compares).
- How a call crosses between two services (``_bentoml_impl.serde.PickleSerde`` and the methods'
  input and output models): the runner hop's benchmark and tests carry a call as BentoML does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# BentoML's error line for a request it could not take (``log_exception``), and its serving log.
REQUEST_ERROR_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.serve")


# -- the traffic metrics middleware ----------------------------------------------------------------
def traffic_metrics_middleware() -> type:
    """The class BentoML puts outermost on every service's app to count its requests."""
    from bentoml._internal.server.http import instruments

    return instruments.RunnerTrafficMetricsMiddleware


def use_traffic_metrics_middleware(middleware: type) -> None:
    """Every app BentoML builds in this process from now on has ``middleware`` in that place (a
    subclass of ``traffic_metrics_middleware()``)."""
    from bentoml._internal.server.http import instruments

    instruments.RunnerTrafficMetricsMiddleware = middleware


# -- where BentoML keeps its files -----------------------------------------------------------------
def bentoml_home() -> Path:
    """BentoML's home (``BENTOML_HOME``, by default ``~/bentoml``); the model store is its
    ``models`` folder."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def image_user() -> int:
    """The uid and gid of the user BentoML's images run as (``bentoml``)."""
    from bentoml._internal.container.generate import BENTO_UID_GID

    return int(BENTO_UID_GID)


def image_home() -> str:
    """That user's home in BentoML's images, with its trailing slash."""
    from bentoml._internal.container.generate import BENTO_HOME

    return str(BENTO_HOME)


# -- a call between two services, as BentoML carries it --------------------------------------------
def carried_call(method: Any, **arguments: Any) -> tuple[dict[str, Any], int]:
    """What ``method`` (a service's ``apis[name]``) receives when another service calls it with
    ``arguments``, and the bytes that cross: BentoML's client validates them into the method's
    input model and pickles it (arrays and bytes out of band), its server unpickles and validates
    them again."""
    from _bentoml_impl.serde import Payload, PickleSerde

    serde = PickleSerde()
    sent = serde.serialize_model(method.input_spec.from_inputs(**arguments))
    data = b"".join(bytes(part) for part in sent.data)
    received = serde.deserialize_model(Payload((data,), sent.headers), method.input_spec)
    return {name: getattr(received, name) for name in type(received).model_fields}, len(data)


def carried_answer(method: Any, answer: Any) -> tuple[Any, int]:
    """What the caller of ``method`` gets back when it answers ``answer`` (a pydantic model), and
    the bytes that cross: the server pickles the model's dump, the client validates it into the
    method's output model."""
    from _bentoml_impl.serde import Payload, PickleSerde

    serde = PickleSerde()
    sent = serde.serialize_model(answer)
    data = b"".join(bytes(part) for part in sent.data)
    return serde.deserialize_model(Payload((data,), sent.headers), method.output_spec), len(data)
