"""API keys, bind checks and the loopback guard (pure ASGI, no network)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from journey.errors import ParcoursError
from journey.settings import Settings
from serving.metrics import Metrics
from serving.middleware import Guard
from serving.security import ApiKeys, InsecureBindError, check_bind, hash_key, is_loopback, key_from_headers


def test_hashed_keys_accept_only_their_key() -> None:
    keys = ApiKeys.parse(f"{hash_key('alpha')}, {hash_key('beta')}")
    assert keys.enabled
    assert keys.accepts("alpha") and keys.accepts("beta")
    assert not keys.accepts("gamma") and not keys.accepts("") and not keys.accepts(None)
    assert not ApiKeys.parse("").enabled


@pytest.mark.parametrize("spec", ["alpha", "md5:abcd", "sha256:zz", "sha256:" + "ab" * 31])
def test_malformed_key_hashes_are_a_configuration_error(spec: str) -> None:
    with pytest.raises(ParcoursError, match="entry 1"):
        ApiKeys.parse(spec)


def test_keys_come_from_bearer_or_x_api_key() -> None:
    assert key_from_headers("Bearer s3cret", None) == "s3cret"
    assert key_from_headers("bearer s3cret ", None) == "s3cret"
    assert key_from_headers(None, "k") == "k"
    assert key_from_headers("Basic abc", None) is None
    assert key_from_headers(None, None) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_without_keys_only_loopback_binds(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(InsecureBindError, match=r"0\.0\.0\.0"):
        check_bind("0.0.0.0", Settings(api_keys=""))
    check_bind("127.0.0.1", Settings(api_keys=""))
    assert "no API keys" in caplog.text
    check_bind("0.0.0.0", Settings(api_keys=hash_key("k")))  # keys configured: any interface


def _call(guard: Guard, server: tuple[str, int] | None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/v1/models", "headers": [], "server": server}
    asyncio.run(guard(scope, receive, send))
    return sent


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_guard_refuses_non_loopback_sockets_without_keys() -> None:
    metrics = Metrics()
    open_guard = Guard(_ok, keys=ApiKeys.parse(""), metrics=metrics, access_log=False)
    assert _call(open_guard, ("10.1.2.3", 8000))[0]["status"] == 403
    assert _call(open_guard, ("127.0.0.1", 8000))[0]["status"] == 200
    keyed = Guard(_ok, keys=ApiKeys.parse(hash_key("k")), metrics=metrics, access_log=False)
    assert _call(keyed, ("10.1.2.3", 8000))[0]["status"] == 200  # keys are checked by the routes
    assert metrics.errors.labels("auth")._value.get() == 1
