"""The retrain job's plumbing without MLflow: decision-log merge, data fingerprint, workspace lock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from journey.logbook import DecisionLog, DecisionRecord
from journey.settings import Settings
from parcours.jobs.retrain import RetrainBusyError, data_fingerprint, merge_decision_log, retrain_lock

T0 = pd.Timestamp("2025-03-01", tz="UTC")


@dataclass(frozen=True)
class Data:
    customers: pd.DataFrame
    events: pd.DataFrame
    contacts: pd.DataFrame


def _data() -> Data:
    customers = pd.DataFrame({"customer_id": ["a", "b"], "signup_ts": [T0, T0]})
    events = pd.DataFrame({"customer_id": ["a"], "ts": [T0], "event_type": ["purchase"]})
    contacts = pd.DataFrame(
        {
            "decision_id": ["d1"],
            "customer_id": ["a"],
            "ts": pd.Series([T0], dtype="datetime64[us, UTC]"),
            "channel": ["email"],
            "content": ["newsletter"],
            "propensity": [0.5],
            "policy": ["nba"],
        }
    )
    return Data(customers, events, contacts)


def _record(decision_id: str, customer: str, days: int) -> DecisionRecord:
    return DecisionRecord(
        decision_id,
        customer,
        T0 + pd.Timedelta(days=days),
        "sms",
        "promotion",
        "conversion",
        0.9,
        "nba",
        False,
        "purchase",
        False,
        {},
        {},
        {},
    )


def test_merge_adds_new_logged_decisions_once_for_known_customers(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    data = _data()
    assert merge_decision_log(data, settings) == (data, 0)  # no decision log yet: nothing to add
    log = DecisionLog(settings.decision_log_path)
    log.append_decisions([_record("d1", "a", 0), _record("d2", "b", 2), _record("d3", "ghost", 3)])
    log.close()
    merged, added = merge_decision_log(data, settings)
    assert added == 1  # d1 is already a contact; "ghost" is not a known customer
    assert merged.contacts["decision_id"].tolist() == ["d1", "d2"]
    assert merged.contacts["ts"].dtype == data.contacts["ts"].dtype
    assert merged.contacts.loc[1, "channel"] == "sms" and merged.contacts.loc[1, "propensity"] == 0.9


def test_fingerprint_changes_with_data_and_horizons(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    data = _data()
    base = data_fingerprint(data, settings, ("purchase",))
    assert data_fingerprint(_data(), settings, ("purchase",)) == base
    more = Data(data.customers, pd.concat([data.events, data.events]), data.contacts)
    assert data_fingerprint(more, settings, ("purchase",)) != base
    assert data_fingerprint(data, Settings(home=tmp_path, purchase_horizon_days=7), ("purchase",)) != base
    assert data_fingerprint(data, settings, ("purchase", "churn")) != base


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    busy = pytest.raises(RetrainBusyError, match=r"another retrain is running .*pid \d+")
    with retrain_lock(settings), busy, retrain_lock(settings):
        pass
    with retrain_lock(settings):  # released on exit
        pass


def test_logged_feedback_reaches_the_training_data(tmp_path: Path) -> None:
    """Outcomes posted to /v1/feedback are attached to what retraining trains the response model on."""
    import pandas as pd

    from journey.logbook import DecisionLog, DecisionRecord
    from journey.settings import Settings
    from training.datasets import LoggedJourneyData

    settings = Settings(home=tmp_path)
    now = pd.Timestamp("2026-03-02 10:00", tz="UTC")
    log = DecisionLog(settings.decision_log_path)
    log.append_decisions(
        [
            DecisionRecord(
                "d1",
                "c1",
                now,
                "email",
                "cart_reminder",
                "conversion",
                0.9,
                "nba",
                False,
                "purchase",
                False,
                {},
                {},
                {},
            )
        ]
    )
    log.append_feedback("d1", "converted", now + pd.Timedelta(days=1), 42.0)
    log.close()
    contacts = pd.DataFrame(
        {"decision_id": ["d1"], "customer_id": ["c1"], "ts": [now], "channel": ["email"], "content": ["cart_reminder"]}
    )
    data = LoggedJourneyData(pd.DataFrame({"customer_id": ["c1"]}), pd.DataFrame(), contacts)
    enriched, _ = merge_decision_log(data, settings)
    assert enriched.feedback is not None and list(enriched.feedback["outcome"]) == ["converted"]
    assert list(enriched.contacts["decision_id"]) == ["d1"]
