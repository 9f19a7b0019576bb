"""FastAPI app factory: `create_app()` for uvicorn, `create_app(runtime=...)` for tests; `serve()` runs uvicorn.

The runtime (models, feature store, decision log writer, model reloader) is loaded at start-up, once per worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from journey.errors import ParcoursError
from journey.settings import Settings
from serving.metrics import Metrics
from serving.middleware import Guard
from serving.reload import ModelReloader
from serving.routes import decisions, events, feedback, health, models
from serving.runtime import Runtime, build_runtime
from serving.schemas import ErrorOut
from serving.security import ApiKeys, check_bind

log = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid API key."},
    413: {"model": ErrorOut, "description": "Request body too large."},
    422: {"model": ErrorOut, "description": "Invalid request: names the field and the rule."},
}


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the API. Settings are read once here (environment or `.env`), keys parsed and checked at start."""
    settings = settings or (runtime.settings if runtime is not None else Settings())
    keys = ApiKeys.parse(settings.api_keys)
    metrics = runtime.metrics if runtime is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = runtime or build_runtime(settings, metrics=metrics)
        app.state.runtime = current
        reloader = ModelReloader.for_settings(current, settings, current.metrics)
        reloader.start()
        app.state.reloader = reloader
        if not keys.enabled:
            log.warning("no API keys configured (PARCOURS_API_KEYS): only loopback clients are served")
        log.info("serving models", extra={"models": current.models.versions() or "none (playbook fallback)"})
        try:
            yield
        finally:
            reloader.stop()
            current.close()
            if (ingest := getattr(app.state, "ingest", None)) is not None:
                ingest.close()

    app = FastAPI(
        title="parcours",
        summary="Next-best-action decisions for customer journeys.",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=settings.max_body_kb * 1024,
        responses=_ERRORS,
    )
    app.state.api_keys = keys
    for router in (health.router, decisions.router, feedback.router, events.router, models.router):
        app.include_router(router)
    app.add_middleware(Guard, keys=keys, metrics=metrics, access_log=settings.access_log)

    @app.exception_handler(ParcoursError)
    async def _domain_error(request: Request, exc: ParcoursError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The default handler echoes the rejected input back; keep only where and why (inputs may be personal).
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the API under uvicorn: refuses a non-loopback bind without API keys; JSON logs; no uvicorn access log."""
    import os

    import uvicorn

    from serving.logs import log_config

    check_bind(host, settings)
    os.environ["PARCOURS_HOME"] = str(settings.root)
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(settings),
        access_log=False,  # parcours.access logs each request without client addresses or bodies
        timeout_graceful_shutdown=10,
    )
