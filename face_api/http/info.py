"""``/v1/health`` and ``/v1/info/...``: what the server runs, from the runner's answer to ``info``
(asked once and kept; ``ServedModel``), which the galleries also use to file features under the
pack's name and size.

FastAPI routes, mounted with the galleries' at ``/v1`` (``service.py``); anyone may call them.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import bentoml
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from face_api import __version__
from face_api.http.error_responses import error_response
from face_api.http.runner_client import RunnerClient
from face_api.http.schemas import (
    ErrorMessage,
    HealthResponse,
    ModelDetail,
    ModelFile,
    ModelNames,
    ServerInfo,
)
from face_api.ops.errors import RETRY_AFTER_S, ApiError
from face_api.ops.runner_hop import RunnerInfo

# The runner answers `info` in milliseconds, even under load. A dead runner's socket is held by
# BentoML's process manager, so a probe waits in its backlog until the restarted runner is up
# (about 6 s here): it must give up well before that, and before a probe's own timeout.
HEALTH_TIMEOUT_S = 2


class ServedModel:
    def __init__(
        self, runner: RunnerClient, service_name: str, warnings: list[str] | None = None
    ) -> None:
        self.runner = runner
        self.service_name = service_name
        # How the server runs unsafely (key checks off), said in every health answer.
        self.warnings = warnings or []
        self._info: RunnerInfo | None = None

    async def info(self) -> RunnerInfo:
        """The runner's pack, models and providers (asked once, then kept)."""
        if self._info is None:
            self._info = await self.runner.info()
        return self._info

    async def health(self) -> JSONResponse:
        """200 when the runner answers now (a probe must see a live runner, not a kept answer);
        else 503 naming the failure."""
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                self._info = await self.runner.info()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            body = HealthResponse(status="unavailable", detail=type(exc).__name__)
            answer = body.model_dump(exclude_none=True) | self._warned()
            return JSONResponse(answer, 503, headers={"retry-after": str(RETRY_AFTER_S)})
        return JSONResponse({"status": "ok"} | self._warned())

    def _warned(self) -> dict[str, list[str]]:
        return {"warnings": self.warnings} if self.warnings else {}

    async def server_info(self) -> ServerInfo:
        import insightface

        info = await self.info()
        return ServerInfo(
            name=self.service_name,
            version=__version__,
            bentoml=bentoml.__version__,
            insightface=insightface.__version__,
            onnxruntime=info.onnxruntime,
            providers=info.providers,
            device=info.device,
            package_conflicts=info.package_conflicts,
            repair_command=info.repair_command,
        )

    async def model_names(self) -> ModelNames:
        name = (await self.info()).pack.name
        return ModelNames(model_name=name, models=[name])

    async def model_detail(self, model_name: str) -> ModelDetail | JSONResponse:
        """The pack's configuration; 404 when ``model_name`` is not served."""
        info = await self.info()
        pack = info.pack
        if model_name != pack.name:
            message = f"model {model_name!r} is not loaded; loaded: [{pack.name!r}]"
            return error_response(ApiError.not_found(message))
        return ModelDetail(
            model_name=pack.name,
            tag=pack.tag,
            files=[ModelFile(name=n, sha256=h) for n, h in pack.files.items()],
            detector=info.detector,
            recognizer=info.recognizer,
            providers=info.providers,
            device=info.device,
            match_threshold=pack.match_threshold,
            match_threshold_measured=pack.match_threshold_measured,
        )

    async def match_threshold(self) -> float:
        return (await self.info()).pack.match_threshold

    async def crop_size(self) -> int:
        return (await self.info()).recognizer.input_size[0]

    async def gallery_key(self) -> tuple[str, int]:
        """The pack's name and embedding size: what a gallery's features are filed under."""
        info = await self.info()
        return info.pack.name, info.recognizer.embedding_size


async def served_model() -> ServedModel:
    """The serving ``FaceAPI`` instance's ``ServedModel`` (async: FastAPI runs a plain function
    dependency on a thread of its pool)."""
    return bentoml.get_current_service().served


Served = Annotated[ServedModel, Depends(served_model)]
router = APIRouter()


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Model runner not ready"}},
)
async def health(served: Served) -> JSONResponse:
    """Checks that the server is live: the model runner answers, now (not a cached answer)."""
    return await served.health()


@router.get("/info/server", response_model=ServerInfo)
async def server_info(served: Served) -> ServerInfo:
    """The server's basic version information."""
    return await served.server_info()


@router.get("/info/model", response_model=ModelNames)
async def model_names(served: Served) -> ModelNames:
    """The name of the model pack being served, and all loaded packs."""
    return await served.model_names()


@router.get(
    "/info/model/{model_name}",
    response_model=ModelDetail,
    responses={404: {"model": ErrorMessage, "description": "No such model pack loaded"}},
)
async def model_detail(model_name: str, served: Served) -> Any:
    """The configuration of the named model pack."""
    return await served.model_detail(model_name)
