"""Feature-store operations: Feast config from Settings, offline snapshots, apply, materialize, and the two reads.

Training reads `historical_features` (point-in-time join in the DuckDB offline store) and serving reads
`online_features` (SQLite or Redis); both go through the feature service `nba`, so a model sees the same columns
in the same order on both sides. `import feast` takes seconds, so it happens inside the functions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.definitions import FEATURE_NAMES, FEATURES
from features.feast_repo.data_sources import TIMESTAMP_FIELD
from features.feast_repo.entities import JOIN_KEY
from features.feast_repo.feature_services import FEATURE_SERVICE
from journey.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from features.online_store.bulk import MaterializeStats

__all__ = [
    "FEATURE_SERVICE",
    "apply",
    "historical_features",
    "materialize",
    "materialize_changes",
    "offline_path",
    "online_features",
    "open_store",
    "repo_config",
    "write_offline",
    "write_repo_yaml",
]

OFFLINE_FILE = "customer_features.parquet"
# Feast resolves these class paths (and their `...Config` classes) itself; see features/online_store.
SQLITE_TYPE = "features.online_store.sqlite.PackedSqliteOnlineStore"
REDIS_TYPE = "features.online_store.redis.PackedRedisOnlineStore"
_ROW = "parcours_row_id"  # carried through Feast to restore the caller's row order


def offline_path(settings: Settings) -> Path:
    return settings.offline_dir / OFFLINE_FILE


def _config_dict(settings: Settings) -> dict[str, Any]:
    """Plain-dict RepoConfig: also what feature_store.yaml holds, so the feast CLI sees the same store."""
    fs_dir = settings.feature_store_dir
    packed = settings.online_layout == "packed"
    online: dict[str, Any]
    if settings.online_store == "redis":
        online = {"type": REDIS_TYPE if packed else "redis", "connection_string": settings.redis_url}
    else:
        online = {"type": SQLITE_TYPE if packed else "sqlite", "path": str(fs_dir / "online.db")}
    return {
        "project": settings.feast_project,
        "provider": "local",
        "registry": str(fs_dir / "registry.db"),
        "online_store": online,
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }


def repo_config(settings: Settings) -> RepoConfig:
    from feast.repo_config import RepoConfig

    return RepoConfig(**_config_dict(settings), repo_path=settings.feature_store_dir)


def write_repo_yaml(settings: Settings) -> Path:
    """feature_store/feature_store.yaml for the feast CLI (e.g. `feast -c feature_store feature-views list`)."""
    import yaml

    path = settings.feature_store_dir / "feature_store.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_config_dict(settings), sort_keys=False))
    return path


def open_store(settings: Settings) -> FeatureStore:
    from feast import FeatureStore

    settings.feature_store_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(settings))


def _definitions(settings: Settings) -> list[Any]:
    from features.feast_repo.data_sources import snapshot_source
    from features.feast_repo.entities import customer_entity
    from features.feast_repo.feature_services import nba_service
    from features.feast_repo.feature_views import feature_views

    entity = customer_entity()
    source = snapshot_source(offline_path(settings))
    views = feature_views(entity, source, settings.feature_ttl_days)
    return [entity, source, *views, nba_service(views)]


def write_offline(snapshots: pd.DataFrame, settings: Settings) -> Path:
    """Replace the offline snapshot parquet atomically (readers never see a half-written file).

    Timestamps are stored as datetime64[us, UTC]: the DuckDB offline store cannot cast nanosecond tz timestamps.
    """
    missing = [c for c in (JOIN_KEY, TIMESTAMP_FIELD, *FEATURE_NAMES) if c not in snapshots.columns]
    if missing:
        raise ValueError(f"snapshots lack columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    frame = snapshots[[JOIN_KEY, TIMESTAMP_FIELD, *FEATURE_NAMES]].copy()
    frame[JOIN_KEY] = frame[JOIN_KEY].astype(str)
    frame[TIMESTAMP_FIELD] = pd.to_datetime(frame[TIMESTAMP_FIELD], utc=True).astype("datetime64[us, UTC]")
    path = offline_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def apply(settings: Settings) -> None:
    """Register entity, source, views and service (idempotent) and write feature_store.yaml."""
    write_repo_yaml(settings)
    open_store(settings).apply(_definitions(settings))


def materialize(
    settings: Settings, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None, full: bool = False
) -> int:
    """Load the latest snapshot in [start, end] of each customer into the online store; returns the number of
    customers in that range (all online). Incremental by default: see `materialize_changes`."""
    return materialize_changes(settings, start, end, full).customers


def materialize_changes(
    settings: Settings, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None, full: bool = False
) -> MaterializeStats:
    """Packed layout: bulk-write only the customers whose latest snapshot changed since the last run (all of them
    when `full`, on the first run, or when the store lost its data), then record the interval in the Feast registry.
    Stock layout: Feast's own `materialize` over [start, end] (always every customer). Default range: every
    offline row."""
    from features.online_store.bulk import MaterializeStats, materialize_packed

    stamps = pd.read_parquet(offline_path(settings), columns=[TIMESTAMP_FIELD])
    if stamps.empty:
        return MaterializeStats(0, 0, 0, full, 0.0)
    ts = pd.to_datetime(stamps[TIMESTAMP_FIELD], utc=True)
    everything = start is None
    lo = _utc(start) if start is not None else ts.min()
    hi = _utc(end) if end is not None else ts.max()
    if settings.online_layout == "stock":
        began = time.perf_counter()
        open_store(settings).materialize(start_date=lo.to_pydatetime(), end_date=hi.to_pydatetime())
        ids = pd.read_parquet(offline_path(settings), columns=[JOIN_KEY, TIMESTAMP_FIELD])
        within = pd.to_datetime(ids[TIMESTAMP_FIELD], utc=True).between(lo, hi)
        n = int(ids.loc[within.to_numpy(), JOIN_KEY].nunique())
        return MaterializeStats(n, n, 0, True, time.perf_counter() - began)
    stats = materialize_packed(settings, offline_path(settings), 0 if everything else _us(lo), _us(hi), full=full)
    if stats.written or stats.deleted:  # nothing changed: skip `import feast` (seconds) and the registry
        fs = open_store(settings)
        _check_registered(fs)
        for view in fs.list_feature_views():  # keep Feast's record of what is online truthful
            fs.registry.apply_materialization(view, fs.project, lo.to_pydatetime(), hi.to_pydatetime(), commit=False)
        fs.registry.commit()
    return stats


def _check_registered(fs: FeatureStore) -> None:
    """The packed vector holds FEATURE_NAMES: the registered service must serve exactly those."""
    service = fs.get_feature_service(FEATURE_SERVICE)
    served = {f.name for projection in service.feature_view_projections for f in projection.features}
    if served != set(FEATURE_NAMES):
        raise ValueError(
            f"feature service {FEATURE_SERVICE!r} in the registry differs from the feature registry "
            f"({len(served ^ set(FEATURE_NAMES))} features differ): run `parcours features apply` first"
        )


def _utc(value: pd.Timestamp | str) -> pd.Timestamp:
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _us(t: pd.Timestamp) -> int:
    return int(t.value // 1000)


def _coerce(frame: pd.DataFrame) -> pd.DataFrame:
    """Registry dtypes where a column is complete; float64 (NaN) where a value is missing."""
    for f in FEATURES:
        column = pd.to_numeric(frame[f.name], errors="coerce").astype("float64")
        frame[f.name] = column.astype("int64") if f.dtype == "int" and column.notna().all() else column
    return frame


def historical_features(settings: Settings, entity_df: pd.DataFrame) -> pd.DataFrame:
    """`entity_df` (customer_id, event_timestamp, any other columns) with FEATURE_NAMES appended, same rows in the
    same order: each row gets the latest snapshot at or before its timestamp (within the ttl), else NaN."""
    store = open_store(settings)
    query = pd.DataFrame(
        {
            JOIN_KEY: entity_df[JOIN_KEY].astype(str).to_numpy(),
            TIMESTAMP_FIELD: pd.to_datetime(entity_df[TIMESTAMP_FIELD], utc=True)
            .astype("datetime64[us, UTC]")
            .reset_index(drop=True),
            _ROW: np.arange(len(entity_df), dtype="int64"),
        }
    )
    job = store.get_historical_features(
        entity_df=query, features=store.get_feature_service(FEATURE_SERVICE), full_feature_names=False
    )
    found = job.to_df().set_index(_ROW).reindex(np.arange(len(entity_df)))
    if len(found) != len(entity_df):
        raise RuntimeError(f"Feast returned {len(found)} rows for {len(entity_df)} entity rows")
    features = _coerce(found[list(FEATURE_NAMES)].reset_index(drop=True))
    kept = entity_df.drop(columns=[c for c in FEATURE_NAMES if c in entity_df.columns]).reset_index(drop=True)
    out = pd.concat([kept, features], axis=1)
    out.index = entity_df.index
    return out


def online_features(settings: Settings, customer_ids: Sequence[str]) -> pd.DataFrame:
    """Latest materialised snapshot per customer: index customer_id (input order), columns FEATURE_NAMES;
    an unknown customer gets a row of NaN."""
    ids = [str(c) for c in customer_ids]
    store = open_store(settings)
    response = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE),
        entity_rows=[{JOIN_KEY: c} for c in ids],
        full_feature_names=False,
    )
    frame = response.to_df()
    out = _coerce(frame[list(FEATURE_NAMES)].reset_index(drop=True))
    out.index = pd.Index(ids, name=JOIN_KEY)
    return out
