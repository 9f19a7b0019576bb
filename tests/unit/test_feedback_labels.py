"""The feedback loop: decision-log contacts and feedback become response-model labels where events are missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from journey.catalog import load_catalog
from journey.logbook import DecisionLog, DecisionRecord
from training.datasets import from_decision_log, with_decision_log
from training.labels import feedback_outcomes, response_dataset

CATALOG = load_catalog()
T0 = pd.Timestamp("2025-03-01 09:00", tz="UTC")


def contacts(*rows: tuple[str, str, pd.Timestamp, str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["decision_id", "customer_id", "ts", "channel", "content"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
    frame["propensity"] = 0.5
    return frame


def events(*rows: tuple[str, pd.Timestamp, str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type", "channel"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
    frame["content"] = None
    frame["value"] = np.nan
    return frame


def feedback(*rows: tuple[str, pd.Timestamp, str, float | None]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["decision_id", "ts", "outcome", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


NO_EVENTS = events(("z", T0 - pd.Timedelta(days=30), "page_view", "web"))


def test_converted_feedback_makes_a_positive_treated_row_with_its_value() -> None:
    log = contacts(
        ("d1", "a", T0, "email", "product_recommendation"), ("d2", "b", T0, "email", "product_recommendation")
    )
    told = feedback(("d1", T0 + pd.Timedelta(days=2), "converted", 42.0))
    without = response_dataset(log, NO_EVENTS, CATALOG, 7).set_index("decision_id")
    with_fb = response_dataset(log, NO_EVENTS, CATALOG, 7, feedback=told).set_index("decision_id")
    assert without.loc["d1", "label"] == 0
    assert with_fb.loc["d1", "label"] == 1 and with_fb.loc["d1", "value_observed"] == 42.0
    assert with_fb.loc["d1", "action_channel"] == "email"
    assert with_fb.loc["d2", "label"] == 0  # no feedback, no event


def test_feedback_outside_the_window_or_for_unknown_decisions_is_ignored() -> None:
    log = contacts(("d1", "a", T0, "email", "product_recommendation"))
    late = feedback(("d1", T0 + pd.Timedelta(days=9), "converted", 10.0), ("zz", T0, "converted", 5.0))
    before = feedback(("d1", T0 - pd.Timedelta(hours=1), "converted", 10.0))
    for told in (late, before):
        assert response_dataset(log, NO_EVENTS, CATALOG, 7, feedback=told)["label"].tolist() == [0]


def test_a_click_counts_only_for_engagement_labels() -> None:
    log = contacts(("d1", "a", T0, "email", "signup_invitation"))
    told = feedback(("d1", T0 + pd.Timedelta(hours=2), "clicked", None))
    assert response_dataset(log, NO_EVENTS, CATALOG, 7, feedback=told)["label"].tolist() == [1]
    goal_only = response_dataset(log, NO_EVENTS, CATALOG, 7, feedback=told, count_responses=False)
    assert goal_only["label"].tolist() == [0]
    clicked_event = events(("a", T0 + pd.Timedelta(hours=1), "email_click", "email"))
    assert response_dataset(log, clicked_event, CATALOG, 7, count_responses=False)["label"].tolist() == [0]
    signed_up = events(("a", T0 + pd.Timedelta(hours=3), "signup", "web"))
    assert response_dataset(log, signed_up, CATALOG, 7, count_responses=False)["label"].tolist() == [1]


def test_converted_on_a_no_contact_decision_counts_for_conversion_contents_only() -> None:
    log = contacts(("d0", "a", T0, "none", "none"))
    told = feedback(("d0", T0 + pd.Timedelta(days=1), "converted", 30.0))
    rows = response_dataset(log, NO_EVENTS, CATALOG, 7, feedback=told).set_index("action_content")["label"]
    assert rows["product_recommendation"] == 1 and rows["educational_guide"] == 0


def test_feedback_outcomes_checks_its_columns() -> None:
    log = contacts(("d1", "a", T0, "email", "product_recommendation"))
    with pytest.raises(ValueError, match="feedback: missing column"):
        feedback_outcomes(log, pd.DataFrame({"decision_id": ["d1"]}), 7)


class Data:
    def __init__(self, contacts: pd.DataFrame) -> None:
        self.customers = pd.DataFrame({"customer_id": ["a", "b"]})
        self.events = NO_EVENTS
        self.contacts = contacts


def test_with_decision_log_adds_logged_decisions_once() -> None:
    base = contacts(("d1", "a", T0, "email", "product_recommendation"))
    logged = contacts(("d1", "a", T0, "email", "product_recommendation"), ("d9", "b", T0, "push", "loyalty_offer"))
    logged["policy"] = "nba"
    merged = with_decision_log(Data(base), logged, feedback(("d9", T0, "opened", None)))
    assert merged.contacts["decision_id"].tolist() == ["d1", "d9"]
    assert merged.feedback is not None and len(merged.feedback) == 1


def test_from_decision_log_reads_the_real_sqlite_log(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "decisions.db"
    log = DecisionLog(path)
    log.append_decisions(
        [
            DecisionRecord(
                "dx",
                "a",
                T0,
                "email",
                "product_recommendation",
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
    log.append_feedback("dx", "converted", T0 + pd.Timedelta(days=1), 55.0)
    log.close()
    data = from_decision_log(Data(contacts()), path)
    rows = response_dataset(data.contacts, data.events, CATALOG, 7, feedback=data.feedback)
    assert rows["decision_id"].tolist() == ["dx"]
    assert rows["label"].tolist() == [1] and rows["value_observed"].tolist() == [55.0]
    assert rows["propensity"].tolist() == [0.9]
