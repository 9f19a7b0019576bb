"""Feast round trip in a temporary workspace: offline snapshots -> apply -> point-in-time join -> materialize ->
online read equal to the latest offline row (train/serve parity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features import store
from features.build import build_features, snapshot_times
from features.definitions import FEATURE_NAMES
from journey.settings import Settings

T0 = pd.Timestamp("2024-03-04", tz="UTC")
D = pd.Timedelta(days=1)


def _world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    ids = [f"c{i}" for i in range(12)]
    n = 600
    events = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n),
            "ts": (T0 - 60 * D + pd.to_timedelta(rng.integers(0, 80 * 24, n), unit="h")).astype("datetime64[us, UTC]"),
            "event_type": rng.choice(["page_view", "product_view", "add_to_cart", "purchase", "email_open"], n),
            "channel": rng.choice(["web", "app", "email"], n),
            "content": None,
            "value": rng.gamma(2.0, 10.0, n),
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_ts": pd.Series(pd.NaT, index=range(len(ids)), dtype="datetime64[us, UTC]"),
            "consent_email": True,
        }
    )
    contacts = pd.DataFrame(
        {
            "decision_id": ["d1"],
            "customer_id": ["c1"],
            "ts": [T0 - 2 * D],
            "channel": ["email"],
            "content": ["x"],
            "propensity": [0.5],
            "policy": ["p"],
        }
    )
    return customers, events, contacts


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame]:
    settings = Settings(home=tmp_path_factory.mktemp("ws"))
    times = snapshot_times(T0, T0 + 14 * D, 7)  # T0, T0 + 7d, T0 + 14d
    snapshots = build_features(*_world(), times)
    path = store.write_offline(snapshots, settings)
    assert path == settings.offline_dir / "customer_features.parquet"
    assert str(pd.read_parquet(path)["event_timestamp"].dtype) == "datetime64[us, UTC]"
    store.apply(settings)
    store.apply(settings)  # idempotent
    return settings, snapshots


def test_repo_yaml_and_config(workspace: tuple[Settings, pd.DataFrame]) -> None:
    settings, _ = workspace
    written = yaml.safe_load((settings.feature_store_dir / "feature_store.yaml").read_text())
    assert written["offline_store"] == {"type": "duckdb"}
    assert Path(written["registry"]).is_absolute() and written["online_store"]["type"] == store.SQLITE_TYPE
    redis = store.repo_config(Settings(home=settings.home, online_store="redis", redis_url="h:1"))
    assert redis.online_store.type == store.REDIS_TYPE
    stock = store.repo_config(Settings(home=settings.home, online_layout="stock"))
    assert stock.online_store.type == "sqlite"
    assert {fv.name for fv in store.open_store(settings).list_feature_views()} >= {"customer_rfm", "customer_consent"}


def test_historical_features_are_point_in_time_and_keep_rows(workspace: tuple[Settings, pd.DataFrame]) -> None:
    settings, snapshots = workspace
    entity = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "unknown", "c1", "c3", "c1"],
            "event_timestamp": [T0 + 8 * D, T0 + 7 * D, T0 + 8 * D, T0 - D, T0 + 30 * D, T0 + 8 * D],
            "label": [1, 2, 3, 4, 5, 6],
        },
        index=[50, 40, 30, 20, 10, 0],
    )
    out = store.historical_features(settings, entity)
    assert list(out.index) == list(entity.index) and list(out["label"]) == [1, 2, 3, 4, 5, 6]
    assert list(out.columns) == ["customer_id", "event_timestamp", "label", *FEATURE_NAMES]
    snap = snapshots.set_index(["customer_id", "event_timestamp"])
    expected = [
        ("c1", T0 + 7 * D),
        ("c2", T0 + 7 * D),
        ("unknown", None),
        ("c1", None),
        ("c3", T0 + 14 * D),
        ("c1", T0 + 7 * D),
    ]
    for i, (cid, at) in enumerate(expected):
        got = out.iloc[i][list(FEATURE_NAMES)].to_numpy(dtype=float)
        if at is None:  # unknown customer, or no snapshot at or before the timestamp
            assert np.isnan(got).all()
        else:
            np.testing.assert_allclose(
                got, snap.loc[(cid, at), list(FEATURE_NAMES)].to_numpy(dtype=float), equal_nan=True, rtol=0, atol=0
            )


def test_materialize_then_online_equals_latest_offline_row(workspace: tuple[Settings, pd.DataFrame]) -> None:
    settings, snapshots = workspace
    assert store.materialize(settings) == snapshots["customer_id"].nunique()
    online = store.online_features(settings, ["c3", "nobody", "c1"])
    assert list(online.index) == ["c3", "nobody", "c1"] and list(online.columns) == list(FEATURE_NAMES)
    assert online.loc["nobody"].isna().all()
    latest = snapshots.sort_values("event_timestamp").groupby("customer_id").tail(1).set_index("customer_id")
    for cid in ("c1", "c3"):
        np.testing.assert_allclose(
            online.loc[cid].to_numpy(dtype=float),
            latest.loc[cid, list(FEATURE_NAMES)].to_numpy(dtype=float),
            equal_nan=True,
            rtol=0,
            atol=0,
        )
    # the same row through the offline join at a time after the last snapshot (train/serve parity)
    hist = store.historical_features(settings, pd.DataFrame({"customer_id": ["c1"], "event_timestamp": [T0 + 20 * D]}))
    np.testing.assert_allclose(
        hist[list(FEATURE_NAMES)].to_numpy(dtype=float)[0],
        online.loc["c1"].to_numpy(dtype=float),
        equal_nan=True,
        rtol=0,
        atol=0,
    )
