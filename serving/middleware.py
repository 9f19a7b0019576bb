"""One pure-ASGI middleware for every request: loopback guard, latency and error metrics, access log.

Pure ASGI (not `BaseHTTPMiddleware`) because it runs on every decision: a few microseconds, no extra task.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.logs import ACCESS_LOGGER
from serving.metrics import Metrics
from serving.security import ApiKeys, is_loopback

access = logging.getLogger(ACCESS_LOGGER)
IN_PROCESS = "testserver"  # Starlette's TestClient: no socket at all
_FORBIDDEN = b'{"detail":"no API keys are configured on this server: it serves loopback clients only"}'


class Guard:
    def __init__(self, app: ASGIApp, keys: ApiKeys, metrics: Metrics, access_log: bool = True) -> None:
        self.app = app
        self.keys = keys
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        if not self.keys.enabled and not _local(scope):
            status = 403
            await _respond(send, 403, _FORBIDDEN)
            self._observe(scope, status, start)
            return

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = 500
            raise
        finally:
            self._observe(scope, status, start)

    def _observe(self, scope: Scope, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        route = _route(scope)
        self.metrics.latency.labels(route, scope["method"], str(status)).observe(elapsed)
        if status >= 400:
            self.metrics.errors.labels(_kind(status)).inc()
        if self.access_log and access.isEnabledFor(logging.INFO):
            access.info(
                "request",
                extra={
                    "request_id": _request_id(scope),
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1e3, 3),
                },
            )


def _local(scope: Scope) -> bool:
    server = scope.get("server")  # the socket's local address (never the Host header)
    return server is None or server[0] == IN_PROCESS or is_loopback(str(server[0]))


def _route(scope: Scope) -> str:
    """The route template (bounded label cardinality), never the raw path."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def _kind(status: int) -> str:
    if status == 401 or status == 403:
        return "auth"
    if status == 413:
        return "too_large"
    return "server_error" if status >= 500 else "client_error"


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return value.decode("latin-1")[:64]
    return uuid.uuid4().hex[:16]


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
