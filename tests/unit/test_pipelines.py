"""Pipeline steps that decide what a model may see: `cut_at` and the snapshot stamp."""

from __future__ import annotations

import pandas as pd

from journey.contract import ValidatedData, validate
from parcours.pipelines import cut_at, data_end

T = pd.Timestamp


def dataset() -> ValidatedData:
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "signup_ts": ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"],
            "consent_email": [False, False],  # both withdrew e-mail consent...
            "consent_sms": [True, False],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["a", "b", "a"],
            "ts": ["2026-02-01T10:00:00Z", "2026-03-15T10:00:00Z", "2026-03-20T10:00:00Z"],
            "event_type": ["unsubscribe", "unsubscribe", "purchase"],  # ...a before the cut, b after it
            "channel": ["email", "email", "web"],
            "value": [None, None, 30.0],
        }
    )
    return validate(customers, events, None, now=T("2026-06-01", tz="UTC"))


def test_cut_at_forgets_later_events_and_restores_consent_revoked_later() -> None:
    data = dataset()
    cut = cut_at(data, T("2026-03-01", tz="UTC"))
    assert list(cut.events["event_type"]) == ["unsubscribe"]
    consent = cut.customers.set_index("customer_id")["consent_email"]
    assert not consent["a"]  # withdrew before the cut: no consent then either
    assert consent["b"]  # withdrew after the cut: still had consent at the cut
    assert not cut.customers.set_index("customer_id")["consent_sms"]["b"]  # other channels untouched
    assert not data.customers.set_index("customer_id")["consent_email"]["b"]  # the input is not modified


def test_data_end_is_the_next_midnight_after_the_last_event() -> None:
    assert data_end(dataset()) == T("2026-03-21", tz="UTC")
