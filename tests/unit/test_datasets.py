"""Cutoff grid, out-of-time split and dataset assembly (with a stand-in feature store that records its calls)."""

from __future__ import annotations

import itertools
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import features
from journey.catalog import load_catalog
from journey.errors import NotReadyError
from journey.settings import Settings
from training.datasets import (
    TaskDataset,
    build_task_dataset,
    cutoff_grid,
    frame_sha256,
    out_of_time_split,
)
from training.labels import churn_labels, phase_labels, purchase_labels

T0 = pd.Timestamp("2024-01-01", tz="UTC")
CATALOG = load_catalog()


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


def frame_of_events(rows: list[tuple[str, pd.Timestamp, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("us")
    frame["channel"] = "web"
    frame["content"] = None
    return frame


# ---------------------------------------------------------------------------------------------------- grid


def test_cutoff_grid_is_midnight_aligned_with_history_and_a_full_horizon() -> None:
    ev = frame_of_events([("a", day(0) + pd.Timedelta(hours=10), "page_view", np.nan), ("a", day(120), "purchase", 1)])
    grid = cutoff_grid(ev, every_days=7, horizon_days=30, min_history_days=28)
    from features.build import snapshot_times

    snapshots = snapshot_times(ev["ts"].min().floor("D"), ev["ts"].max(), 7)  # as `parcours features build`
    assert set(grid) <= set(snapshots)
    assert grid == [t for t in snapshots if grid[0] <= t <= grid[-1]]
    assert all(t == t.normalize() and str(t.tz) == "UTC" for t in grid)
    assert grid[0] >= ev["ts"].min() + pd.Timedelta(days=28)
    assert grid[-1] + pd.Timedelta(days=30) <= ev["ts"].max()
    assert grid[-1] + pd.Timedelta(days=37) > ev["ts"].max()  # the next one would cut the horizon short
    assert all(b - a == pd.Timedelta(days=7) for a, b in itertools.pairwise(grid))


def test_cutoff_grid_starts_where_the_behavioural_log_does_not_in_old_orders() -> None:
    """A log carrying years of imported orders before its behavioural events: training cutoffs (and the feature
    snapshots they join) start with the dense part, on the same grid, and the old orders still count."""
    from features.build import log_start, snapshot_plan
    from journey.simulator import SimulationConfig, simulate

    start = pd.Timestamp("2024-03-01", tz="UTC")
    data = simulate(SimulationConfig(customers=400, days=70, seed=5, start=start, log_prior_purchases=True))
    assert data.events["ts"].min() < start - pd.Timedelta(days=90)
    grid = cutoff_grid(data.events, every_days=7, horizon_days=7, min_history_days=28)
    assert start + pd.Timedelta(days=28) <= grid[0] < start + pd.Timedelta(days=42)
    end = data.events["ts"].max().floor("D")
    plan = snapshot_plan(log_start(data.events["ts"], 7), end, 7)  # as the pipelines do
    assert set(grid) <= set(plan)
    assert plan[0] > start - pd.Timedelta(days=7)


def test_cutoff_grid_is_empty_when_history_is_too_short() -> None:
    ev = frame_of_events([("a", day(0), "purchase", 1), ("a", day(50), "purchase", 1)])
    assert cutoff_grid(ev, 7, 30) == []
    assert cutoff_grid(ev.iloc[:0], 7, 30) == []


# ---------------------------------------------------------------------------------------------------- split


def test_split_sends_latest_cutoffs_to_test_and_keeps_ties_together() -> None:
    stamps = pd.Series([day(7 * (i % 10)) for i in range(100)], index=np.arange(100)[::-1])
    split = out_of_time_split(stamps)
    assert split.index.equals(stamps.index)
    by_time = pd.DataFrame({"t": stamps, "s": split}).groupby("t")["s"].agg(set)
    assert all(len(parts) == 1 for parts in by_time)
    assert [next(iter(p)) for p in by_time] == ["train"] * 7 + ["valid"] * 2 + ["test"]


def test_split_gives_valid_and_test_a_cutoff_even_when_few() -> None:
    assert out_of_time_split(pd.Series([day(0), day(7), day(14)])).tolist() == ["train", "valid", "test"]
    assert out_of_time_split(pd.Series([day(0), day(7)])).tolist() == ["train", "test"]
    assert out_of_time_split(pd.Series([day(0), day(0)])).tolist() == ["train", "train"]
    with pytest.raises(ValueError):
        out_of_time_split(pd.Series([day(0)]), valid_share=0.5, test_share=0.5)


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=60),
    valid=st.floats(min_value=0, max_value=0.4),
    test=st.floats(min_value=0, max_value=0.4),
)
def test_split_never_puts_a_later_row_in_train_than_in_valid_or_test(
    offsets: list[int], valid: float, test: float
) -> None:
    stamps = pd.Series([day(o) for o in offsets])
    split = out_of_time_split(stamps, valid_share=valid, test_share=test)
    rank = split.map({"train": 0, "valid": 1, "test": 2})
    order = np.argsort(stamps.to_numpy(), kind="stable")
    assert np.all(np.diff(rank.to_numpy()[order]) >= 0)  # parts are monotone in time


# ---------------------------------------------------------------------------------------------------- assembly


@dataclass
class Data:
    customers: pd.DataFrame
    events: pd.DataFrame
    contacts: pd.DataFrame | None = None


@dataclass
class FakeStore:
    """Stands in for features.store: one feature = days since the epoch of the requested time, to check joins."""

    calls: list[pd.DataFrame] = field(default_factory=list)

    def historical_features(self, settings: Settings, entity_df: pd.DataFrame) -> pd.DataFrame:
        assert not entity_df.duplicated().any()
        self.calls.append(entity_df.copy())
        out = entity_df.copy()
        out["f_time"] = entity_df["event_timestamp"].astype("int64") / 86_400e6
        out["f_customer"] = entity_df["customer_id"].str.len().astype(float)
        return out


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    fake = FakeStore()
    store_module = types.ModuleType("features.store")
    store_module.historical_features = fake.historical_features  # type: ignore[attr-defined]
    definitions = types.ModuleType("features.definitions")
    definitions.FEATURE_NAMES = ("f_time", "f_customer")  # type: ignore[attr-defined]
    request = types.ModuleType("features.request")

    def add_request_features(frame: pd.DataFrame, ts: pd.Series) -> pd.DataFrame:
        return frame.assign(hour=ts.dt.hour.to_numpy())

    request.add_request_features = add_request_features  # type: ignore[attr-defined]
    for name, module in [("store", store_module), ("definitions", definitions), ("request", request)]:
        monkeypatch.setitem(sys.modules, f"features.{name}", module)
        monkeypatch.setattr(features, name, module, raising=False)
    return fake


def journey_data(with_contacts: bool = True) -> Data:
    """Three customers over ~5 months; c arrives late, b stops buying."""
    rows = []
    for week in range(22):
        rows.append(("a", day(7 * week + 1), "product_view", np.nan))
        if week % 3 == 0:
            rows.append(("a", day(7 * week + 2), "purchase", 20.0))
        if week < 8:
            rows.append(("b", day(7 * week + 3), "store_purchase", 50.0))
        if week >= 12:
            rows.append(("c", day(7 * week + 4), "page_view", np.nan))
    events = frame_of_events(rows)
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "signup_ts": [T0, T0, pd.NaT]})
    customers["signup_ts"] = pd.to_datetime(customers["signup_ts"], utc=True).dt.as_unit("us")
    contacts = None
    if with_contacts:
        contacts = pd.DataFrame(
            {
                "decision_id": ["d1", "d2", "d3", "d4"],
                "customer_id": ["a", "b", "a", "a"],
                "ts": [day(40), day(41), day(60), day(152)],  # d4's window runs past the data
                "channel": ["email", "none", "none", "push"],
                "content": ["product_recommendation", "none", "none", "onboarding_tips"],
                "propensity": [0.2, 0.7, 0.7, 0.1],
                "policy": "test",
            }
        )
        contacts["ts"] = pd.to_datetime(contacts["ts"], utc=True).dt.as_unit("us")
    return Data(customers, events, contacts)


def test_purchase_dataset_rows_labels_and_features(store: FakeStore, tmp_path: Path) -> None:
    data = journey_data()
    ds = build_task_dataset("purchase", data, Settings(home=tmp_path), CATALOG)
    assert isinstance(ds, TaskDataset) and ds.label == "label" and ds.task == "purchase"
    assert ds.feature_names == ["f_time", "f_customer", "hour"]
    frame = ds.frame
    assert list(frame.columns) == ["customer_id", "event_timestamp", "f_time", "f_customer", "hour", "label"]
    assert frame.equals(frame.sort_values(["event_timestamp", "customer_id"]).reset_index(drop=True))
    # features are the ones the store returned for each row's own (customer, t)
    expected_days = frame["event_timestamp"].astype("int64") / 86_400e6
    assert np.allclose(frame["f_time"], expected_days)
    # customers exist only after their first event
    first_c = data.events.loc[data.events["customer_id"] == "c", "ts"].min()
    assert (frame.loc[frame["customer_id"] == "c", "event_timestamp"] > first_c).all()
    cutoffs = cutoff_grid(data.events, 7, 30)
    assert sorted(frame["event_timestamp"].unique()) == cutoffs
    assert frame["label"].tolist() == purchase_labels(data.events, frame, 30).tolist()
    assert ds.split.index.equals(frame.index)
    assert ds.meta["rows"] == len(frame) and ds.meta["positives"] == int(frame["label"].sum())
    assert ds.meta["cutoffs"] == [t.isoformat() for t in cutoffs] and ds.meta["horizon_days"] == 30
    assert ds.meta["training_set_sha256"] == frame_sha256(frame)
    again = build_task_dataset("purchase", data, Settings(home=tmp_path), CATALOG)
    assert again.meta["training_set_sha256"] == ds.meta["training_set_sha256"]


def test_churn_keeps_only_eligible_rows(store: FakeStore, tmp_path: Path) -> None:
    data = journey_data()
    ds = build_task_dataset("churn", data, Settings(home=tmp_path, churn_horizon_days=21), CATALOG)
    check = churn_labels(data.events, ds.frame, 21, 90)
    assert check["eligible"].all()
    assert ds.frame["label"].tolist() == check["label"].tolist()
    assert ds.frame.loc[ds.frame["customer_id"] == "b", "label"].max() == 1  # b goes silent after week 8


def test_phase_labels_are_strings(store: FakeStore, tmp_path: Path) -> None:
    data = journey_data()
    ds = build_task_dataset("phase", data, Settings(home=tmp_path), CATALOG)
    assert ds.frame["label"].tolist() == phase_labels(data.customers, data.events, ds.frame).tolist()
    assert set(ds.meta["positives"]) <= {"discovery", "consideration", "purchase", "service", "advocacy"}


def test_subsample_is_deterministic_and_keeps_time_order(store: FakeStore, tmp_path: Path) -> None:
    data = journey_data()
    one = build_task_dataset("purchase", data, Settings(home=tmp_path), CATALOG, max_rows=10, seed=3)
    two = build_task_dataset("purchase", data, Settings(home=tmp_path), CATALOG, max_rows=10, seed=3)
    assert len(one.frame) == 10 and one.frame.equals(two.frame)
    assert one.frame["event_timestamp"].is_monotonic_increasing


def test_response_dataset_joins_features_at_contact_time(store: FakeStore, tmp_path: Path) -> None:
    data = journey_data()
    ds = build_task_dataset("response", data, Settings(home=tmp_path), CATALOG)
    frame = ds.frame
    assert ds.action_columns == ["action_channel", "action_content"]
    assert set(frame["decision_id"]) == {"d1", "d2", "d3"}  # d4 has no full window
    assert (frame["action_channel"] == "none").sum() == 2 * len(CATALOG.contents)
    assert np.allclose(frame["f_time"], frame["event_timestamp"].astype("int64") / 86_400e6)
    assert len(store.calls[-1]) == 3  # control rows share one feature lookup per decision
    assert ds.meta["treated_rows"] == 1 and ds.meta["decisions"] == 3
    d1 = frame.loc[frame["decision_id"] == "d1"].iloc[0]
    assert d1["label"] == 1 and d1["value_observed"] == 20.0  # a buys on day 44


def test_response_without_contacts_is_not_ready(store: FakeStore, tmp_path: Path) -> None:
    bare = journey_data(with_contacts=False)
    with pytest.raises(NotReadyError, match="no logged contacts: response model skipped"):
        build_task_dataset("response", bare, Settings(home=tmp_path), CATALOG)
    # a bare transaction log still trains the customer models
    assert len(build_task_dataset("purchase", bare, Settings(home=tmp_path), CATALOG).frame) > 0


def test_bare_transaction_log_gives_customer_datasets(store: FakeStore, tmp_path: Path) -> None:
    data = journey_data(with_contacts=False)
    data.events = data.events.loc[data.events["event_type"].isin(["purchase", "store_purchase"])]
    data.customers["signup_ts"] = pd.NaT
    for task in ("purchase", "churn", "phase"):
        ds = build_task_dataset(task, data, Settings(home=tmp_path), CATALOG)
        assert len(ds.frame) > 0 and ds.frame["label"].notna().all()
    phases = build_task_dataset("phase", data, Settings(home=tmp_path), CATALOG).frame["label"]
    assert set(phases) <= {"discovery", "purchase", "service"}


def test_too_short_history_is_not_ready(store: FakeStore, tmp_path: Path) -> None:
    data = journey_data()
    data.events = data.events.loc[data.events["ts"] < day(40)]
    with pytest.raises(NotReadyError, match="no training cutoff"):
        build_task_dataset("purchase", data, Settings(home=tmp_path), CATALOG)


@pytest.mark.integration
def test_purchase_dataset_through_feast(tmp_path: Path) -> None:
    """The real point-in-time join: each row carries the snapshot taken exactly at its cutoff."""
    store = pytest.importorskip("features.store")
    from features.build import build_features, snapshot_times
    from features.definitions import FEATURE_NAMES

    data = journey_data()
    assert data.contacts is not None
    for column in ("consent_email", "consent_sms", "consent_push", "consent_mail", "consent_call", "consent_ads"):
        data.customers[column] = True
    settings = Settings(home=tmp_path)
    start, end = data.events["ts"].min().floor("D"), data.events["ts"].max().ceil("D")
    snapshots = build_features(data.customers, data.events, data.contacts, snapshot_times(start, end, 7))
    store.write_offline(snapshots, settings)
    store.apply(settings)

    ds = build_task_dataset("purchase", data, settings, CATALOG)
    frame = ds.frame
    assert ds.feature_names[: len(FEATURE_NAMES)] == list(FEATURE_NAMES)
    assert frame.equals(frame.sort_values(["event_timestamp", "customer_id"]).reset_index(drop=True))
    assert frame["label"].tolist() == purchase_labels(data.events, frame, 30).tolist()
    expected = frame[["customer_id", "event_timestamp"]].merge(
        snapshots[["customer_id", "event_timestamp", "purchases_total", "events_total"]],
        on=["customer_id", "event_timestamp"],
        how="left",
    )
    assert np.allclose(frame["purchases_total"], expected["purchases_total"])
    assert np.allclose(frame["events_total"], expected["events_total"])
