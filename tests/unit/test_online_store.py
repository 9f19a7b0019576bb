"""Packed online vectors: exact codec, SQLite backend, fingerprints and incremental bulk materialization
(on tiny hand-made offline frames; no Feast involved)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import store
from features.definitions import FEATURE_NAMES
from features.online_store.backends import OnlineStoreUnavailable, SqliteVectors, parse_redis_url
from features.online_store.bulk import fingerprints, materialize_packed
from features.online_store.codec import LayoutMismatch, VectorCodec, default_codec
from journey.settings import Settings

T = pd.Timestamp("2024-05-06", tz="UTC")


def test_codec_round_trip_is_bit_exact_and_compact() -> None:
    codec = VectorCodec(("a", "b", "c", "d", "e", "f", "g"))
    x = np.array(
        [
            [0.0, np.nan, 3.0, 0.1, -0.0, np.inf, 1e300],
            [0.0] * 7,
            [np.nan] * 7,
            [1.5, 2.0, -7.0, 123456789.123, 2.0**30, -1e-310, 0.25],
        ]
    )
    ts = np.array([1, -5, 0, 1_700_000_000_000_000], dtype=np.int64)
    blobs = codec.encode_batch(ts, x)
    for i, blob in enumerate(blobs):
        got_ts, got = codec.decode(blob)
        assert got_ts == ts[i]
        assert np.array_equal(got, x[i], equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(x[i]))  # -0.0 stays -0.0
    head = 13 + 2  # version, layout, ts + 7 two-bit classes
    assert len(blobs[1]) == len(blobs[2]) == head  # zeros and NaNs cost nothing
    # 3.0 and inf as float32; 0.1 and 1e300 as float64; -0.0 is not +0.0 so it is a float32
    assert len(blobs[0]) == head + 3 * 4 + 2 * 8


def test_codec_full_layout_fits_the_per_customer_budget() -> None:
    codec = default_codec()
    assert codec.names == tuple(FEATURE_NAMES)
    worst = codec.encode_batch(np.zeros(1, dtype=np.int64), np.full((1, codec.width), 0.1))[0]
    assert len(worst) == 13 + (codec.width + 3) // 4 + 8 * codec.width  # never more than raw float64 + 41 B


def test_codec_rejects_other_layouts_wrong_shapes_and_truncation() -> None:
    one, other = VectorCodec(("a", "b")), VectorCodec(("a", "c"))
    blob = one.encode_batch(np.zeros(1, dtype=np.int64), np.array([[0.1, 2.0]]))[0]
    with pytest.raises(LayoutMismatch, match="--full"):
        other.decode(blob)
    with pytest.raises(ValueError, match="corrupt"):
        one.decode(blob[:-1])
    with pytest.raises(ValueError, match="shape"):
        one.encode_batch(np.zeros(1, dtype=np.int64), np.zeros((1, 3)))


def test_sqlite_vectors_round_trip(tmp_path: Path) -> None:
    table = SqliteVectors(tmp_path / "online.db", "proj")
    table.create()
    table.create()  # idempotent
    table.put_many(["a", "b"], [b"1", b"2"])
    table.put_many(["b"], [b"3"])
    assert table.get("a") == b"1" and table.get("zz") is None
    assert table.get_many(["b", "zz", "a"]) == [b"3", None, b"1"]
    ids = [f"c{i}" for i in range(1200)]  # more than one IN (...) chunk
    table.put_many(ids, [i.encode() for i in ids])
    assert table.get_many(ids[::-1])[:2] == [b"c1199", b"c1198"]
    table.delete_many(["a"])
    assert table.get("a") is None
    assert table.get_meta("g") is None
    table.set_meta("g", "x")
    assert table.get_meta("g") == "x"
    table.drop()
    with pytest.raises(OnlineStoreUnavailable, match="no such table"):
        table.ping()


def test_parse_redis_url() -> None:
    assert parse_redis_url("127.0.0.1:6380,db=2,password=s3") == {
        "host": "127.0.0.1",
        "port": 6380,
        "db": 2,
        "password": "s3",
    }
    with pytest.raises(ValueError, match="host:port"):
        parse_redis_url("db=1")


def test_fingerprints_are_stable_and_sensitive() -> None:
    x = np.array([[1.0, np.nan], [1.0, np.nan], [1.0, 2.0]])
    ts = np.array([5, 5, 5])
    fp = fingerprints(ts, x)
    assert fp[0] == fp[1] != fp[2]
    assert fingerprints(np.array([6, 5, 5]), x)[0] != fp[0]
    assert np.array_equal(fingerprints(ts, x.copy()), fp)


def _snapshots(values: dict[str, float]) -> pd.DataFrame:
    """Two snapshots per customer: only the later one may reach the online store."""
    rows = []
    for cid, v in values.items():
        for t, scale in ((T - pd.Timedelta(days=7), -1.0), (T, 1.0)):
            row = {"customer_id": cid, "event_timestamp": t} | {n: 0.0 for n in FEATURE_NAMES}
            row[FEATURE_NAMES[0]] = scale * v
            row[FEATURE_NAMES[1]] = np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _online(table: SqliteVectors, cid: str) -> tuple[int, np.ndarray] | None:
    blob = table.get(cid)
    return None if blob is None else default_codec().decode(blob)


def test_bulk_materialize_is_incremental(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    table = SqliteVectors(tmp_path / "online.db", settings.feast_project)
    path = store.write_offline(_snapshots({"a": 1.0, "b": 2.0, "c": 3.0}), settings)

    first = materialize_packed(settings, path, 0, 2**62, backend=table, batch_rows=2)
    assert (first.customers, first.written, first.full) == (3, 3, True)
    found = _online(table, "b")
    assert found is not None and found[0] == T.value // 1000
    assert found[1][0] == 2.0 and np.isnan(found[1][1])

    again = materialize_packed(settings, path, 0, 2**62, backend=table, batch_rows=2)
    assert (again.written, again.deleted, again.full) == (0, 0, False)

    store.write_offline(_snapshots({"a": 1.0, "b": 20.0, "d": 4.0}), settings)  # b changed, c left, d arrived
    changed = materialize_packed(settings, path, 0, 2**62, backend=table, batch_rows=2)
    assert (changed.customers, changed.written, changed.deleted, changed.full) == (3, 2, 1, False)
    b = _online(table, "b")
    assert b is not None and b[1][0] == 20.0
    assert _online(table, "c") is None and _online(table, "d") is not None

    forced = materialize_packed(settings, path, 0, 2**62, full=True, backend=table)
    assert (forced.written, forced.full) == (3, True)

    table.drop()  # the store lost its data: the saved state no longer matches its generation -> full run
    recovered = materialize_packed(settings, path, 0, 2**62, backend=table)
    assert (recovered.written, recovered.full) == (3, True)
    assert _online(table, "a") is not None


def test_bulk_materialize_respects_the_time_range(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    table = SqliteVectors(tmp_path / "online.db", settings.feast_project)
    path = store.write_offline(_snapshots({"a": 1.0}), settings)
    week_before = (T - pd.Timedelta(days=1)).value // 1000
    stats = materialize_packed(settings, path, 1, week_before, backend=table)
    found = _online(table, "a")
    assert stats.customers == 1 and found is not None and found[1][0] == -1.0  # the earlier snapshot
