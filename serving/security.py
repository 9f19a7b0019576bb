"""API keys and bind checks.

Keys are configured hashed (`PARCOURS_API_KEYS='sha256:<hex>,...'`) so a leaked environment or compose file does
not leak a usable key. Without keys (the embedded demo) the API serves loopback only: `check_bind` refuses to
start on another interface, and a request that reaches a non-loopback socket anyway (e.g. `uvicorn --host
0.0.0.0` directly) is refused with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from dataclasses import dataclass

from journey.errors import ParcoursError
from journey.settings import Settings

log = logging.getLogger(__name__)

SCHEME = "sha256"
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


class InsecureBindError(ParcoursError):
    """Serving beyond loopback without API keys."""


def hash_key(key: str) -> str:
    """The configured form of a client key: 'sha256:<hex digest>'."""
    return f"{SCHEME}:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


@dataclass(frozen=True)
class ApiKeys:
    """The accepted key hashes; empty means authentication is off."""

    digests: frozenset[bytes]

    @classmethod
    def parse(cls, spec: str) -> ApiKeys:
        """Parse 'sha256:<hex>,...'; a malformed entry is a configuration error naming it (never a silent skip)."""
        digests = set()
        for position, entry in enumerate(e.strip() for e in spec.split(",")):
            if not entry:
                continue
            scheme, _, hexdigest = entry.partition(":")
            try:
                digest = bytes.fromhex(hexdigest)
            except ValueError:
                digest = b""
            if scheme != SCHEME or len(digest) != hashlib.sha256().digest_size:
                raise ParcoursError(
                    f"api_keys: entry {position + 1} is not 'sha256:<64 hex digits>' "
                    "(hash a key with `python -c \"from serving.security import hash_key; print(hash_key('KEY'))\"`)"
                )
            digests.add(digest)
        return cls(frozenset(digests))

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def accepts(self, key: str | None) -> bool:
        if not key:
            return False
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        # Compare against every configured hash in constant time; no early exit leaks which one matched.
        matched = False
        for known in self.digests:
            matched |= hmac.compare_digest(digest, known)
        return matched


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Settings) -> None:
    """Refuse to serve beyond loopback without API keys; warn when serving without keys at all."""
    keys = ApiKeys.parse(settings.api_keys)
    if keys.enabled:
        return
    if not is_loopback(host):
        raise InsecureBindError(
            f"refusing to bind {host}: no API keys are configured. Set PARCOURS_API_KEYS='sha256:<hex>,...' "
            "or bind 127.0.0.1"
        )
    log.warning("no API keys configured (PARCOURS_API_KEYS): serving without authentication on loopback only")


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The client's key from `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    if x_api_key:
        return x_api_key
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None
