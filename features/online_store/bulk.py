"""Bulk, incremental materialization of the latest offline snapshot per customer into a packed online store.

No protobuf, no per-value Python: DuckDB selects the latest row per customer from the offline parquet (streamed in
record batches), numpy packs whole batches, the backend upserts them in one transaction / pipelined MSETs.

Incremental: a fingerprint (64-bit hash of snapshot time + all values) per customer is kept under
`feature_store/materialized/<store>.parquet`; a run writes only customers whose fingerprint changed, and deletes
customers that left the offline store. The state is trusted only if the store still holds the generation token
written by the last full run (a flushed Redis or a deleted online.db forces a full run).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.online_store.backends import RedisVectors, SqliteVectors, VectorBackend
from features.online_store.codec import VectorCodec, default_codec
from journey.settings import Settings

GENERATION = "generation"
_ID, _TS = "customer_id", "event_timestamp"


@dataclass(frozen=True)
class MaterializeStats:
    """What one run did: customers in the range, vectors written and deleted, and whether it was a full run."""

    customers: int
    written: int
    deleted: int
    full: bool
    seconds: float


def open_backend(settings: Settings, timeout_s: float | None = None) -> VectorBackend:
    """The packed store the settings point at (SQLite file under feature_store/, or Redis)."""
    if settings.online_store == "redis":
        return RedisVectors(settings.redis_url, settings.feast_project, timeout_s or settings.redis_timeout_s)
    return SqliteVectors(settings.feature_store_dir / "online.db", settings.feast_project)


def latest_rows(
    parquet: Path, names: tuple[str, ...], lo_us: int, hi_us: int, batch_rows: int
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """(customer ids, snapshot us, values (n, len(names)) float64) of each customer's latest row in [lo, hi],
    sorted by customer id, `batch_rows` customers at a time."""
    import duckdb

    cols = ", ".join(f's."{n}"::DOUBLE' for n in names)
    sql = f"""
        WITH src AS (
            SELECT * FROM read_parquet($path)
            WHERE epoch_us({_TS}) BETWEEN $lo AND $hi
        ),
        last AS (SELECT {_ID}, max({_TS}) AS ts FROM src GROUP BY {_ID})
        SELECT s.{_ID}::VARCHAR AS {_ID}, epoch_us(s.{_TS}) AS ts_us, {cols}
        FROM src s JOIN last l ON s.{_ID} = l.{_ID} AND s.{_TS} = l.ts
        QUALIFY row_number() OVER (PARTITION BY s.{_ID}) = 1
        ORDER BY s.{_ID}
    """
    con = duckdb.connect(config={"threads": 2, "memory_limit": "2GB"})
    try:
        reader = con.sql(sql, params={"path": str(parquet), "lo": lo_us, "hi": hi_us}).to_arrow_reader(batch_rows)
        for batch in reader:
            if batch.num_rows == 0:
                continue
            ids = batch.column(0).to_pylist()
            ts = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
            values = np.empty((batch.num_rows, len(names)), dtype=np.float64)
            for j in range(len(names)):
                values[:, j] = batch.column(j + 2).to_numpy(zero_copy_only=False)
            yield ids, ts, values
    finally:
        con.close()


def fingerprints(ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash per row of (snapshot time, values); NaNs hash alike."""
    frame = pd.DataFrame(values)
    frame["__ts"] = ts
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


class _State:
    """The fingerprints of what the store holds, per store (so switching SQLite <-> Redis is safe)."""

    def __init__(self, settings: Settings, backend: VectorBackend, codec: VectorCodec) -> None:
        key = hashlib.sha1(f"{backend.location}|{settings.feast_project}|{codec.layout}".encode()).hexdigest()[:16]
        base = settings.feature_store_dir / "materialized"
        self.table, self.meta = base / f"{key}.parquet", base / f"{key}.json"
        self.location = backend.location

    def load(self, generation: str | None) -> pd.Series | None:
        """customer_id -> fingerprint, or None when absent or not matching the store's generation."""
        if generation is None or not self.meta.exists() or not self.table.exists():
            return None
        if json.loads(self.meta.read_text()).get(GENERATION) != generation:
            return None
        frame = pd.read_parquet(self.table)
        return pd.Series(frame["fp"].to_numpy(dtype=np.uint64), index=pd.Index(frame[_ID], name=_ID))

    def save(self, ids: list[str], fps: np.ndarray, generation: str) -> None:
        self.table.parent.mkdir(parents=True, exist_ok=True)
        _replace(self.table, lambda p: pd.DataFrame({_ID: ids, "fp": fps}).to_parquet(p, index=False))
        payload = {GENERATION: generation, "store": self.location, "customers": len(ids), "at": time.time()}
        _replace(self.meta, lambda p: p.write_text(json.dumps(payload)))


def _replace(path: Path, write: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)  # type: ignore[operator]
    os.replace(tmp, path)


def materialize_packed(
    settings: Settings,
    parquet: Path,
    lo_us: int,
    hi_us: int,
    full: bool = False,
    backend: VectorBackend | None = None,
    batch_rows: int | None = None,
) -> MaterializeStats:
    """Write the latest row per customer in [lo, hi]; incremental unless `full` or the state cannot be trusted.
    Customers absent from the offline store are deleted only when the range covers everything (`lo_us` <= 0)."""
    started = time.perf_counter()
    codec = default_codec()
    store = backend or open_backend(settings, timeout_s=60.0)
    store.create()
    state = _State(settings, store, codec)
    previous = None if full else state.load(store.get_meta(GENERATION))
    full = previous is None
    all_ids: list[str] = []
    all_fps: list[np.ndarray] = []
    written = 0
    for ids, ts, values in latest_rows(
        parquet, codec.names, lo_us, hi_us, batch_rows or settings.materialize_batch_rows
    ):
        fps = fingerprints(ts, values)
        all_ids += ids
        all_fps.append(fps)
        rows = np.arange(len(ids)) if previous is None else np.flatnonzero(_changed(previous, ids, fps))
        if len(rows):
            store.put_many([ids[i] for i in rows], codec.encode_batch(ts[rows], values[rows]))
            written += len(rows)
    deleted = 0
    if previous is not None and lo_us <= 0:
        gone = previous.index.difference(pd.Index(all_ids))
        store.delete_many(list(gone))
        deleted = len(gone)
    generation = store.get_meta(GENERATION) if not full else None
    if generation is None:
        generation = uuid.uuid4().hex
        store.set_meta(GENERATION, generation)
    fps_all = np.concatenate(all_fps) if all_fps else np.zeros(0, dtype=np.uint64)
    state.save(all_ids, fps_all, generation)
    return MaterializeStats(len(all_ids), written, deleted, full, time.perf_counter() - started)


def _changed(previous: pd.Series, ids: list[str], fps: np.ndarray) -> np.ndarray:
    """True where a customer is new or its fingerprint differs from the stored one."""
    positions = previous.index.get_indexer(pd.Index(ids))
    old = previous.to_numpy()[np.maximum(positions, 0)]
    return (positions < 0) | (old != fps)
