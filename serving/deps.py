"""FastAPI dependencies: the runtime lives on `app.state`, built by the lifespan."""

from __future__ import annotations

from fastapi import HTTPException, Request

from serving.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status_code=503, detail="the decision runtime is not loaded yet")
    return runtime
