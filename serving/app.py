"""FastAPI app factory: `create_app()` for uvicorn, `create_app(runtime=...)` for tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from journey.errors import ParcoursError
from journey.settings import Settings
from serving.routes import decisions, events, feedback, health, models
from serving.runtime import Runtime, build_runtime

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the API; the runtime (models, feature store, decision log) is loaded at start-up, once."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = runtime or build_runtime(settings or Settings())
        loaded = app.state.runtime.models.versions()
        log.info("serving models: %s", loaded or "none (decisions fall back to the playbook)")
        try:
            yield
        finally:
            app.state.runtime.decision_log.close()

    app = FastAPI(
        title="parcours",
        summary="Next-best-action decisions for customer journeys.",
        version="0.1.0",
        lifespan=lifespan,
    )
    for router in (health.router, decisions.router, feedback.router, events.router, models.router):
        app.include_router(router)

    @app.exception_handler(ParcoursError)
    async def _domain_error(request: Request, exc: ParcoursError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    return app
