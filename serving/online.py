"""Online feature reads for one customer or one micro-batch, prepared once at start-up (store, service, names).

`online_reader(settings)` picks the reader: with the packed layout (default) one SQLite query or one Redis GET per
customer, one query / one MGET per micro-batch (`read_many`), through the same table Feast's plugin reads (no
`import feast`, no protobuf); with the stock layout the `nba` feature service through Feast's SDK.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from journey.settings import Settings

if TYPE_CHECKING:
    from features.online_store.backends import VectorBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureRow:
    """One customer's online features; `snapshot_ts` is when they were computed (None if unknown)."""

    values: dict[str, float]
    snapshot_ts: pd.Timestamp | None


class OnlineFeatures(Protocol):
    def read(self, customer_id: str) -> FeatureRow | None:
        """The customer's features, or None when the store has never seen this customer."""
        ...

    def ping(self) -> None:
        """Raise if the store is unreachable."""
        ...


def online_reader(settings: Settings) -> OnlineFeatures:
    """The reader serving uses for `settings` (packed unless `online_layout=stock`)."""
    if settings.online_layout == "packed":
        return PackedOnlineFeatures(settings)
    return FeastOnlineFeatures(settings)


class PackedOnlineFeatures:
    """Reads a customer's packed vector with one query / one GET; raises OnlineStoreUnavailable when the store is
    unreachable (the runtime then answers in degraded mode)."""

    def __init__(self, settings: Settings, backend: VectorBackend | None = None) -> None:
        from features.online_store.backends import OnlineStoreUnavailable
        from features.online_store.bulk import open_backend
        from features.online_store.codec import default_codec

        self._codec = default_codec()
        self._names = self._codec.names
        self._backend = backend if backend is not None else open_backend(settings)
        try:  # an empty store is valid (cold starts); an unreachable one must not stop serving from starting
            self._backend.create()
        except OnlineStoreUnavailable:
            log.warning("online store unreachable at start-up; reads answer degraded until it is back", exc_info=True)

    def read(self, customer_id: str) -> FeatureRow | None:
        return self._row(self._backend.get(customer_id))

    def read_many(self, customer_ids: Sequence[str]) -> list[FeatureRow | None]:
        """One query (SQLite) or one MGET (Redis) for the whole micro-batch."""
        if len(customer_ids) == 1:
            return [self.read(customer_ids[0])]
        return [self._row(blob) for blob in self._backend.get_many(customer_ids)]

    def _row(self, blob: bytes | None) -> FeatureRow | None:
        if blob is None:
            return None
        ts_us, values = self._codec.decode(blob)
        return FeatureRow(
            values=dict(zip(self._names, values.tolist(), strict=True)),
            snapshot_ts=pd.Timestamp(ts_us, unit="us", tz="UTC"),
        )

    def ping(self) -> None:
        self._backend.ping()

    def close(self) -> None:
        self._backend.close()


class FeastOnlineFeatures:
    """Reads the `nba` feature service through Feast's Python SDK."""

    def __init__(self, settings: Settings) -> None:
        from features.store import FEATURE_SERVICE, open_store

        self._store = open_store(settings)
        self._service = self._store.get_feature_service(FEATURE_SERVICE)

    def read(self, customer_id: str) -> FeatureRow | None:
        return self.read_many([customer_id])[0]

    def read_many(self, customer_ids: Sequence[str]) -> list[FeatureRow | None]:
        response = self._store.get_online_features(
            features=self._service, entity_rows=[{"customer_id": c} for c in customer_ids]
        ).to_dict(include_event_timestamps=True)
        return [_feast_row(response, i) for i in range(len(customer_ids))]

    def ping(self) -> None:
        self._store.get_online_features(features=self._service, entity_rows=[{"customer_id": "__ping__"}])


def _feast_row(response: dict[str, list[Any]], i: int) -> FeatureRow | None:
    """Row i of Feast's column-wise answer; None when every feature is missing (an unknown customer)."""
    values: dict[str, float] = {}
    latest = 0
    for name, column in response.items():
        if name == "customer_id":
            continue
        if name.endswith("__ts"):
            latest = max(latest, int(column[i] or 0))
        else:
            values[name] = _as_float(column[i])
    if all(math.isnan(v) for v in values.values()):
        return None
    snapshot = pd.Timestamp(latest, unit="s", tz="UTC") if latest else None
    return FeatureRow(values=values, snapshot_ts=snapshot)


def _as_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
