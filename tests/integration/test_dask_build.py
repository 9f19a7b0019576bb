"""The Dask build equals the single-machine build exactly, on a real local cluster of two worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.distributed import bucket_of, build_features_distributed, combine, snapshot_grid
from journey.catalog import load_catalog
from journey.contract import validate
from journey.simulator import SimulationConfig, simulate

if TYPE_CHECKING:
    from distributed import Client

pytestmark = pytest.mark.integration
distributed = pytest.importorskip("distributed")  # an optional dependency: see docs/realtime.md

NOW = pd.Timestamp("2025-06-01", tz="UTC")


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Client]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    )
    client = distributed.Client(cluster, timeout="60s")
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated dataset with the event log split into parquet parts (how a large log arrives)."""
    data = simulate(SimulationConfig(customers=300, days=60, seed=3, start=NOW - pd.Timedelta(days=60)), load_catalog())
    root = tmp_path_factory.mktemp("dask-data")
    data.customers.to_parquet(root / "customers.parquet", index=False)
    data.contacts.to_parquet(root / "contacts.parquet", index=False)
    (root / "events").mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(data.events)), 3)):
        data.events.iloc[rows].to_parquet(root / "events" / f"part-{i}.parquet", index=False)
    return root


def _single_machine(data_dir: Path) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    events = pd.concat([pd.read_parquet(p) for p in sorted((data_dir / "events").glob("*.parquet"))])
    data = validate(
        pd.read_parquet(data_dir / "customers.parquet"),
        events.reset_index(drop=True),
        pd.read_parquet(data_dir / "contacts.parquet"),
        load_catalog(),
        now=NOW,
    )
    assert data.usable, data.problems
    last = max(data.events["ts"].max(), data.contacts["ts"].max())
    times = snapshot_grid(data.events["ts"].min(), last, 7)
    return build_features(data.customers, data.events, data.contacts, times), times


def test_dask_build_equals_the_single_machine_build(cluster_client: Client, data_dir: Path, tmp_path: Path) -> None:
    expected, times = _single_machine(data_dir)
    build = build_features_distributed(cluster_client, data_dir, tmp_path / "work", buckets=5, now=NOW)
    assert build.times == times
    assert build.rows == len(expected)
    got = pd.read_parquet(combine(build.parts_dir, tmp_path / "customer_features.parquet"))
    got["event_timestamp"] = got["event_timestamp"].astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_exact=True)
    # every bucket did part of the work: the split really happened
    assert len(list(build.parts_dir.glob("part-*.parquet"))) == 5
    assert all(r.rows_in.get("events", 0) > 0 for r in build.reports)


def test_buckets_are_stable_and_ignore_id_spelling() -> None:
    ids = pd.Series(["c1", " c1 ", "c2", "007"])
    first = bucket_of(ids, 16)
    assert first[0] == first[1]
    assert (bucket_of(ids, 16) == first).all()
    assert bucket_of(pd.Series([7.0]), 16)[0] == bucket_of(pd.Series(["7"]), 16)[0]
