"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from serving.deps import get_runtime
from serving.runtime import Runtime
from serving.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="The process is alive")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/readyz", response_model=HealthOut, summary="Models loaded and online store reachable")
async def readyz(runtime: Annotated[Runtime, Depends(get_runtime)], response: Response) -> HealthOut:
    checks = {"models": ", ".join(sorted(runtime.models.versions())) or "none loaded"}
    ready = bool(runtime.models.loaded())
    try:
        runtime.features.ping()
        checks["online_store"] = "reachable"
    except Exception as exc:  # report, never crash
        checks["online_store"] = f"unreachable: {type(exc).__name__}"
        ready = False
    if not ready:
        response.status_code = 503
    return HealthOut(status="ready" if ready else "not ready", checks=checks)
