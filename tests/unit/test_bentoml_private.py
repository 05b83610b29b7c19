"""What the project relies on in BentoML's private modules (face_api/ops/bentoml_private.py),
checked against the BentoML installed: after an upgrade, a failure here names the assumption
that broke and what depends on it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bentoml
import pytest
from starlette.requests import Request

from face_api.ops import bentoml_private
from face_api.ops.context import CallContext
from face_api.ops.errors import Reply


@bentoml.service
class Probe:
    """A service of BentoML's own kind, for BentoML to build an app of and carry calls to."""

    @bentoml.api
    def echo(self, text: str, request: CallContext) -> Reply[str]:
        return Reply(result=text)


def test_every_app_bentoml_builds_has_the_traffic_middleware_it_finds_then_outermost():
    original = bentoml_private.traffic_metrics_middleware()
    assert isinstance(original, type), (
        "bentoml._internal.server.http.instruments.RunnerTrafficMetricsMiddleware is gone: "
        "face_api/http/observability.py subclasses it to label /metrics by route"
    )

    class Labelled(original):  # type: ignore[misc, valid-type]
        pass

    bentoml_private.use_traffic_metrics_middleware(Labelled)
    try:
        app = Probe.to_asgi()
    finally:
        bentoml_private.use_traffic_metrics_middleware(original)
    outermost = app.user_middleware[0].cls
    assert outermost is Labelled, (
        f"BentoML built a service's app with {outermost!r} outermost, not the traffic metrics "
        "middleware that bentoml._internal.server.http.instruments held when it built the app: "
        "face_api/http/observability.py's route labels (and its refusal of websocket handshakes "
        "before any metric) would not apply"
    )


def test_the_model_store_is_in_bentomls_home(imported_pack):
    from face_api.inference.packs import get_pack

    home = bentoml_private.bentoml_home()
    assert home == Path(os.environ["BENTOML_HOME"]), (
        "BentoMLContainer.bentoml_home no longer follows BENTOML_HOME: the message for a pack "
        "that is not imported (face_api/inference/packs.py) names the wrong model store"
    )
    assert Path(get_pack(imported_pack).path).is_relative_to(home / "models"), (
        "BentoML's model store is no longer BENTOML_HOME/models: face_api/inference/packs.py "
        "names the wrong folder"
    )


def test_a_request_bentoml_could_not_take_is_logged_through_the_loggers_we_redact():
    from _bentoml_impl.server import app

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    loggers = [logging.getLogger(name) for name in bentoml_private.REQUEST_ERROR_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    scope = {"type": "http", "method": "POST", "path": "/v1/detect", "headers": []}
    try:
        try:
            raise ValueError("a client's invalid request")
        except ValueError:
            app.log_exception(Request(scope))  # what BentoML's server calls for such a request
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["Exception on /v1/detect [POST]"], (
        "BentoML's server no longer reports a request it could not take through "
        f"{bentoml_private.REQUEST_ERROR_LOGGERS}: face_api/ops/logs.py would let the client's "
        "data into those lines"
    )
    assert app.logger.name in bentoml_private.REQUEST_ERROR_LOGGERS, (
        f"BentoML's serving log is now {app.logger.name!r}: face_api/ops/logs.py redacts others"
    )


def test_bentomls_images_run_as_the_user_the_chart_names():
    assert bentoml_private.image_user() == 1034, (
        "BentoML's images now run as another uid: the Helm chart's securityContext "
        "(kubernetes/face-api) runs as 1034"
    )
    assert bentoml_private.image_home() == "/home/bentoml/", (
        "BentoML's images have another home: the Helm chart mounts a writable cache under "
        "/home/bentoml/.cache"
    )


@pytest.mark.parametrize("text", ["hello", ""])
def test_a_call_between_services_crosses_as_its_models(text):
    echo = Probe.apis["echo"]
    received, sent = bentoml_private.carried_call(
        echo, text=text, request=CallContext(id="r", deadline_s=1.5)
    )
    assert received == {"text": text, "request": CallContext(id="r", deadline_s=1.5)}, (
        "BentoML no longer hands a service method the arguments its caller gave, validated into "
        "the types the method declares: the runner hop's benchmark and tests carry calls wrongly"
    )
    assert sent > len(text)
    answer, _ = bentoml_private.carried_answer(echo, Reply[str](result=text))
    assert isinstance(answer, Reply) and answer.unwrap() == text
