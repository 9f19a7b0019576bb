"""FastAPI dependencies: the runtime lives on `app.state` (built by the lifespan); API-key authentication.

Both are `async def` although they do no I/O: FastAPI runs a plain `def` dependency in its threadpool, a thread
hop and ~0.4 ms of CPU per request on the hot path (and it breaks up the micro-batches of `serving.runtime`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.runtime import Runtime
from serving.security import ApiKeys

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <API key>`")


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status_code=503, detail="the decision runtime is not loaded yet")
    return runtime


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> None:
    """401 unless a configured key is sent (as a Bearer token or X-API-Key); open when no key is configured."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return
    key = header or (bearer.credentials if bearer else None)
    if not keys.accepts(key):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
