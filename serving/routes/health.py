"""Liveness, readiness and Prometheus metrics: open without an API key (probes and scrapers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.deps import get_runtime
from serving.runtime import Runtime
from serving.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="The process is alive")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/readyz", response_model=HealthOut, summary="Models loaded and online store reachable (503 says why not)")
async def readyz(runtime: Annotated[Runtime, Depends(get_runtime)], response: Response) -> HealthOut:
    loaded = runtime.models.versions()
    checks = {"models": ", ".join(f"{task}={v}" for task, v in sorted(loaded.items())) or "none loaded"}
    ready = bool(loaded)
    try:
        runtime.features.ping()
        checks["online_store"] = "reachable"
    except Exception as exc:  # report, never crash
        checks["online_store"] = f"unreachable: {type(exc).__name__}: {str(exc)[:200]}"
        ready = False
    if not runtime.writer.alive:
        checks["decision_log"] = "writer stopped"
        ready = False
    else:
        checks["decision_log"] = "writable"
    if not ready:
        response.status_code = 503
    return HealthOut(status="ready" if ready else "not ready", checks=checks)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Response:
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
