"""The same behaviour from both online stores (SQLite file, real redis-server), through Feast's own API and the
packed serving reader: train/serve parity, unknown customers, incremental materialization, and a store going away.

A feature-only workspace (simulate -> features build through the real CLI; no models are needed here).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import store
from features.definitions import FEATURE_NAMES
from features.online_store.backends import OnlineStoreUnavailable
from journey.settings import Settings
from parcours.cli import app
from serving.online import PackedOnlineFeatures, online_reader
from tests.servers import redis_server


@dataclass(frozen=True)
class Features:
    home: Path
    offline: pd.DataFrame  # what the build wrote

    def latest(self) -> pd.DataFrame:
        rows = self.offline.sort_values("event_timestamp").groupby("customer_id").tail(1)
        return rows.set_index("customer_id")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Features:
    home = tmp_path_factory.mktemp("online-home")
    runner = CliRunner()
    for args in (["simulate", "--customers", "300", "--days", "60", "--seed", "5"], ["features", "build"]):
        result = runner.invoke(app, [*args, "--home", str(home)])
        assert result.exit_code == 0, result.output + repr(result.exception)
    return Features(home=home, offline=pd.read_parquet(store.offline_path(Settings(home=home))))


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest, built: Features) -> Settings:
    """Settings for one store, applied and fully materialized."""
    if request.param == "redis":
        settings = Settings(home=built.home, online_store="redis", redis_url=request.getfixturevalue("redis_url"))
    else:
        settings = Settings(home=built.home)
    store.apply(settings)
    stats = store.materialize_changes(settings, full=True)
    assert stats.full and stats.written == stats.customers == built.offline["customer_id"].nunique()
    return settings


def _vector(values: dict[str, float]) -> np.ndarray:
    return np.array([values[n] for n in FEATURE_NAMES], dtype=float)


def test_feast_online_read_is_the_latest_offline_row(online: Settings, built: Features) -> None:
    latest = built.latest()
    ids = [*latest.index[:25], "nobody", latest.index[0]]
    got = store.online_features(online, ids)  # FeatureStore.get_online_features through the plugin
    assert list(got.index) == ids and list(got.columns) == list(FEATURE_NAMES)
    assert got.loc["nobody"].isna().all()
    expected = latest.loc[ids[:25], list(FEATURE_NAMES)].to_numpy(dtype=float)
    assert np.array_equal(got.iloc[:25].to_numpy(dtype=float), expected, equal_nan=True)
    # train/serve parity: the offline point-in-time join after the last snapshot gives the same row
    when = latest["event_timestamp"].max() + pd.Timedelta(days=1)
    hist = store.historical_features(online, pd.DataFrame({"customer_id": ids[:5], "event_timestamp": [when] * 5}))
    assert np.array_equal(hist[list(FEATURE_NAMES)].to_numpy(dtype=float), expected[:5], equal_nan=True)


def test_feast_response_carries_the_snapshot_time_and_int_types(online: Settings, built: Features) -> None:
    latest = built.latest()
    cid = str(latest.index[3])
    fs = store.open_store(online)
    response = fs.get_online_features(
        features=fs.get_feature_service(store.FEATURE_SERVICE), entity_rows=[{"customer_id": cid}]
    ).to_dict(include_event_timestamps=True)
    stamps = {v[0] for k, v in response.items() if k.endswith("__ts") and k[: -len("__ts")] in FEATURE_NAMES}
    assert stamps == {int(latest["event_timestamp"].astype("int64")[cid]) // 1_000_000}
    assert isinstance(response["purchases_total"][0], int)  # Int64 features come back as ints


def test_packed_reader_matches_feast(online: Settings, built: Features) -> None:
    latest = built.latest()
    reader = online_reader(online)
    assert isinstance(reader, PackedOnlineFeatures)
    reader.ping()
    for cid in latest.index[:25]:
        row = reader.read(str(cid))
        assert row is not None and row.snapshot_ts == latest.loc[cid, "event_timestamp"]
        assert np.array_equal(
            _vector(row.values), latest.loc[cid, list(FEATURE_NAMES)].to_numpy(dtype=float), equal_nan=True
        )
    assert reader.read("nobody") is None


def test_incremental_materialize_writes_only_changed_customers(online: Settings, built: Features) -> None:
    again = store.materialize_changes(online)
    assert (again.written, again.deleted, again.full) == (0, 0, False)

    latest = built.latest()
    cid = str(latest.index[7])
    changed = built.offline.copy()
    last = changed.index[
        (changed["customer_id"] == cid) & (changed["event_timestamp"] == changed["event_timestamp"].max())
    ]
    changed.loc[last, "monetary_total"] = 12345.5
    try:
        store.write_offline(changed, online)
        stats = store.materialize_changes(online)
        assert (stats.written, stats.full) == (1, False)
        row = online_reader(online).read(cid)
        assert row is not None and row.values["monetary_total"] == 12345.5
        other = online_reader(online).read(str(latest.index[8]))
        assert other is not None and other.values["monetary_total"] == latest.iloc[8]["monetary_total"]
    finally:
        store.write_offline(built.offline, online)
        assert store.materialize_changes(online).written == 1


def test_feast_materialize_through_the_plugin_merges_views(tmp_path: Path, built: Features) -> None:
    """`feast materialize` (Feast's own engine, one view at a time) writes the same vectors as the bulk path."""
    settings = Settings(home=tmp_path, feast_project="viafeast")
    store.write_offline(built.offline, settings)
    store.apply(settings)
    latest = built.latest()
    fs = store.open_store(settings)
    ts = pd.to_datetime(built.offline["event_timestamp"], utc=True)
    fs.materialize(start_date=ts.min().to_pydatetime(), end_date=ts.max().to_pydatetime())
    reader = online_reader(settings)
    for cid in latest.index[:10]:
        row = reader.read(str(cid))
        assert row is not None
        assert np.array_equal(
            _vector(row.values), latest.loc[cid, list(FEATURE_NAMES)].to_numpy(dtype=float), equal_nan=True
        )


def test_redis_down_reader_raises_clearly(tmp_path: Path, built: Features) -> None:
    with redis_server(tmp_path) as url:
        settings = Settings(home=built.home, online_store="redis", redis_url=url, feast_project="downtest")
        store.apply(settings)
        store.materialize(settings, full=True)
        reader = online_reader(settings)
        cid = str(built.latest().index[0])
        assert reader.read(cid) is not None
    with pytest.raises(OnlineStoreUnavailable, match=f"Redis online store at {url} unreachable"):
        reader.read(cid)
    with pytest.raises(OnlineStoreUnavailable, match="unreachable"):
        reader.ping()
    started = online_reader(settings)  # serving can still start while the store is down
    with pytest.raises(OnlineStoreUnavailable):
        started.read(cid)
