"""The ingested-event log: durable appends, per-customer reads, validation of submitted events, merging."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey.eventlog import EventLog, merge_ingested, read_ingested, validate_events

NOW = pd.Timestamp("2025-06-10 12:00", tz="UTC")
SKEW = pd.Timedelta(minutes=5)


def _events(rows: list[tuple[str, str, str, str, str | None, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type", "channel", "content", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
    frame["value"] = frame["value"].astype("float64")
    return frame


def _customers(ids: list[str], email: bool = True) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids,
            "signup_ts": pd.Series([pd.NaT] * len(ids), dtype="datetime64[us, UTC]"),
            "consent_ads": False,
            "consent_call": False,
            "consent_email": email,
            "consent_mail": False,
            "consent_push": False,
            "consent_sms": False,
        }
    )


def test_append_then_read_by_customer_in_arrival_order(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    log.append(_events([("a", "2025-06-10 10:00", "product_view", "web", "tv", np.nan)]))
    log.append(
        _events(
            [
                ("b", "2025-06-10 09:00", "page_view", "app", None, np.nan),
                ("a", "2025-06-10 09:30", "purchase", "web", "tv", 499.0),
            ]
        )
    )
    got = log.events_for(["a"])
    assert list(got["event_type"]) == ["product_view", "purchase"]
    assert got["ts"].dtype == "datetime64[us, UTC]"
    assert got["value"].iloc[0] != got["value"].iloc[0] and got["value"].iloc[1] == 499.0  # NaN kept as NaN
    assert got["content"].tolist() == ["tv", "tv"]
    assert log.events_for(["b"])["content"].tolist() == [None]
    assert log.count() == 3 and log.events_for([]).empty
    log.close()


def test_acknowledged_append_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    script = f"""
import os, signal, pandas as pd
from journey.eventlog import EventLog
log = EventLog(__import__("pathlib").Path({str(path)!r}))
frame = pd.DataFrame({{"customer_id": ["a"], "ts": [pd.Timestamp("2025-06-10", tz="UTC")], "event_type": ["signup"],
                       "channel": ["web"], "content": [None], "value": [float("nan")]}})
log.append(frame)
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    assert done.returncode == -9
    assert read_ingested(path)["event_type"].tolist() == ["signup"]


def test_read_ingested_without_a_log_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.db"
    assert read_ingested(path).empty
    assert not path.exists()


def test_validation_names_index_field_and_rule_and_accepts_unknown_customers() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["new-visitor", "a", "a", "b"],
            "ts": ["2025-06-10T11:00:00Z", "2025-06-10T11:00:00Z", "2025-06-11T12:00:00Z", "10/06/2025"],
            "event_type": ["Add_To_Cart", "teleport", "page_view", "page_view"],
            "channel": ["WEB", "web", "web", None],
            "content": [None, None, None, None],
            "value": [None, None, None, None],
        }
    )
    events, problems = validate_events(raw, NOW, SKEW)
    assert [(p.index, p.field) for p in problems] == [(1, "event_type"), (2, "ts"), (3, "ts")]
    assert "teleport" in problems[0].rule and "event vocabulary" in problems[0].rule
    assert "in the future" in problems[1].rule
    assert events["customer_id"].iloc[0] == "new-visitor"
    assert (events["event_type"].iloc[0], events["channel"].iloc[0]) == ("add_to_cart", "web")


def test_validation_refuses_a_negative_purchase_amount() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["a"],
            "ts": ["2025-06-10T11:00:00Z"],
            "event_type": ["purchase"],
            "channel": ["web"],
            "content": [None],
            "value": [-5.0],
        }
    )
    _, problems = validate_events(raw, NOW, SKEW)
    assert [(p.index, p.field) for p in problems] == [(0, "value")]
    assert ">= 0" in problems[0].rule


def test_merge_adds_visitors_drops_exact_duplicates_and_is_idempotent() -> None:
    base = _events([("a", "2025-06-01 10:00", "product_view", "web", "tv", np.nan)])
    ingested = _events(
        [
            ("a", "2025-06-01 10:00", "product_view", "web", "tv", np.nan),  # already in the data
            ("a", "2025-06-10 10:00", "add_to_cart", "web", "tv", np.nan),
            ("v", "2025-06-10 10:05", "page_view", "web", None, np.nan),
            ("v", "2025-06-10 10:05", "page_view", "web", None, np.nan),  # a retried request
        ]
    )
    customers, events = merge_ingested(_customers(["a"]), base, ingested)
    assert len(events) == 3
    assert customers["customer_id"].tolist() == ["a", "v"]
    visitor = customers.set_index("customer_id").loc["v"]
    assert pd.isna(visitor["signup_ts"]) and not visitor["consent_email"]
    again_customers, again = merge_ingested(customers, events, ingested)
    pd.testing.assert_frame_equal(again, events)
    pd.testing.assert_frame_equal(again_customers, customers)


def test_merge_applies_signup_and_unsubscribe_to_todays_customer_state() -> None:
    ingested = _events(
        [
            ("a", "2025-06-10 10:00", "signup", "web", None, np.nan),
            ("a", "2025-06-10 10:10", "unsubscribe", "email", None, np.nan),
        ]
    )
    customers, _ = merge_ingested(_customers(["a", "b"]), _events([]), ingested)
    row = customers.set_index("customer_id")
    assert row.loc["a", "signup_ts"] == pd.Timestamp("2025-06-10 10:00", tz="UTC")
    assert not row.loc["a", "consent_email"] and row.loc["b", "consent_email"]
    assert row["signup_ts"].isna().tolist() == [False, True]


def test_merge_without_ingested_events_returns_the_inputs() -> None:
    base = _events([("a", "2025-06-01 10:00", "product_view", "web", "tv", np.nan)])
    customers = _customers(["a"])
    assert merge_ingested(customers, base, _events([])) == (customers, base)


@pytest.mark.parametrize("tolerance", [pd.Timedelta(0), pd.Timedelta(minutes=5)])
def test_future_tolerance_is_configurable(tolerance: pd.Timedelta) -> None:
    raw = pd.DataFrame(
        {"customer_id": ["a"], "ts": [(NOW + pd.Timedelta(minutes=1)).isoformat()], "event_type": ["page_view"]}
    )
    _, problems = validate_events(raw, NOW, tolerance)
    assert bool(problems) == (tolerance == pd.Timedelta(0))


def test_refresh_from_the_history_equals_the_offline_build(tmp_path: Path) -> None:
    from features.build import build_features
    from features.realtime import HistoryReader, features_now, read_source, write_source
    from journey.settings import Settings

    settings = Settings(home=tmp_path)
    customers = _customers(["a", "b", "c"])
    events = _events(
        [
            ("a", "2025-06-01 10:00", "product_view", "web", "tv", np.nan),
            ("a", "2025-06-02 10:00", "purchase", "web", "tv", 400.0),
            ("b", "2025-06-03 10:00", "email_open", "email", None, np.nan),
            ("c", "2025-06-04 10:00", "page_view", "app", None, np.nan),
        ]
    )
    contacts = pd.DataFrame(
        {
            "decision_id": ["d1"],
            "customer_id": ["b"],
            "ts": pd.Series([pd.Timestamp("2025-06-03 09:00", tz="UTC")], dtype="datetime64[us, UTC]"),
            "channel": ["email"],
            "content": ["newsletter"],
            "propensity": [1.0],
            "policy": ["rule"],
        }
    )
    write_source(
        settings, tmp_path / "data", None, NOW, {"customers": customers, "events": events, "contacts": contacts}
    )
    source = read_source(settings)
    assert source is not None and source.rows == {"customers": 3, "events": 4, "contacts": 1}
    ingested = _events(
        [
            ("a", "2025-06-10 11:00", "add_to_cart", "web", "tv", np.nan),
            ("v", "2025-06-10 11:30", "page_view", "web", None, np.nan),
        ]
    )
    reader = HistoryReader(source)
    history = reader.read(["a", "b", "v"])
    reader.close()
    assert sorted(history.events["customer_id"]) == ["a", "a", "b"] and len(history.contacts) == 1
    got = features_now(history, ingested, contacts.iloc[:0], NOW)

    all_customers, all_events = merge_ingested(customers, events, ingested)
    expected = build_features(all_customers, all_events, contacts, [NOW])
    expected = expected[expected["customer_id"].isin(["a", "b", "v"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_exact=True)
    assert got.set_index("customer_id").loc["a", "cart_abandoned_7d"] == 1
