"""Online feature reads for one customer, prepared once at start-up (store, feature service, names)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from journey.settings import Settings


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


class FeastOnlineFeatures:
    """Reads the `nba` feature service through Feast's Python SDK."""

    def __init__(self, settings: Settings) -> None:
        from features.store import FEATURE_SERVICE, open_store

        self._store = open_store(settings)
        self._service = self._store.get_feature_service(FEATURE_SERVICE)

    def read(self, customer_id: str) -> FeatureRow | None:
        response = self._store.get_online_features(
            features=self._service, entity_rows=[{"customer_id": customer_id}]
        ).to_dict(include_event_timestamps=True)
        values: dict[str, float] = {}
        latest = 0
        for name, column in response.items():
            if name == "customer_id":
                continue
            if name.endswith("__ts"):
                latest = max(latest, int(column[0] or 0))
            else:
                values[name] = _as_float(column[0])
        if all(math.isnan(v) for v in values.values()):
            return None
        snapshot = pd.Timestamp(latest, unit="s", tz="UTC") if latest else None
        return FeatureRow(values=values, snapshot_ts=snapshot)

    def ping(self) -> None:
        self._store.get_online_features(features=self._service, entity_rows=[{"customer_id": "__ping__"}])


def _as_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
