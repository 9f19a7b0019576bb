"""Contact policies: each rule on hand-made states, the YAML errors, and a property over random states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.policy_state import contact_state
from journey.catalog import Action, load_catalog
from journey.decision import DecisionEngine
from journey.errors import ConfigError
from journey.policies import ContactState, QuietHours, load_policies
from journey.scoring import LoadedModel, ModelSet
from journey.vocabulary import CONSENT_COLUMNS, CONSENT_FIELDS

CATALOG = load_catalog()
POLICIES = load_policies()
ALL_CONSENTS = dict.fromkeys(CONSENT_FIELDS, True)


@pytest.mark.parametrize(
    ("state", "action", "hour", "expected"),
    [
        (ContactState(consents={}), Action("email", "cart_reminder"), 10, "no consent: consent_email"),
        (
            ContactState(consents=ALL_CONSENTS, sent_day={"sms": 1}),
            Action("sms", "cart_reminder"),
            10,
            "contacts today",
        ),
        (
            ContactState(consents=ALL_CONSENTS, sent_week={"email": 2}),
            Action("email", "cart_reminder"),
            10,
            "in 7 days",
        ),
        (
            ContactState(consents=ALL_CONSENTS, sent_week={"push": 1, "mail": 2}),
            Action("email", "x"),
            10,
            "overall 3/3",
        ),
        (ContactState(consents=ALL_CONSENTS, hours_since_last_contact=3), Action("email", "x"), 10, "minimum gap"),
        (ContactState(consents=ALL_CONSENTS), Action("sms", "cart_reminder"), 22, "quiet hours"),
        (ContactState(consents=ALL_CONSENTS), Action("call", "demo_invitation"), 6, "quiet hours"),
        (ContactState(consents=ALL_CONSENTS, days_since_opt_out=2), Action("email", "x"), 10, "opt-out"),
        (ContactState(consents=ALL_CONSENTS, ignored_recent={"email": 3}), Action("email", "x"), 10, "fatigue"),
    ],
)
def test_each_rule_names_itself(state: ContactState, action: Action, hour: int, expected: str) -> None:
    reason = POLICIES.violation(action, state, CATALOG, hour)
    assert reason is not None and expected in reason


def test_allowed_when_nothing_applies() -> None:
    state = ContactState(consents=ALL_CONSENTS, sent_week={"email": 1}, hours_since_last_contact=48)
    assert POLICIES.violation(Action("email", "cart_reminder"), state, CATALOG, 10) is None
    assert POLICIES.violation(Action("none", "none"), ContactState(), CATALOG, 3) is None


def test_web_is_not_capped_but_still_respects_opt_out() -> None:
    busy = ContactState(consents=ALL_CONSENTS, sent_day={"email": 5}, hours_since_last_contact=0.1)
    assert POLICIES.violation(Action("web", "educational_guide"), busy, CATALOG, 23) is None
    opted_out = ContactState(days_since_opt_out=1)
    assert POLICIES.violation(Action("web", "educational_guide"), opted_out, CATALOG, 10) is not None


def test_quiet_hours_wrap_midnight() -> None:
    quiet = QuietHours(start=21, end=8)
    assert [quiet.covers(h) for h in (20, 21, 0, 7, 8)] == [False, True, True, True, False]


def test_invalid_policy_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text("caps:\n  overall: {per_day: -1}\n")
    with pytest.raises(ConfigError, match=r"caps\.overall\.per_day"):
        load_policies(path)


def test_contact_state_adds_decisions_logged_since_the_snapshot() -> None:
    now = pd.Timestamp("2026-03-02 10:00", tz="UTC")
    features = {"consent_email": 1.0, "contacts_email_1d": 0.0, "contacts_email_7d": 1.0, "consent_sms": float("nan")}
    state = contact_state(features, [(now - pd.Timedelta(hours=2), "email")], now)
    assert state.consents["consent_email"] is True and state.consents["consent_sms"] is False
    assert state.sent_day["email"] == 1 and state.sent_week["email"] == 2
    assert state.hours_since_last_contact == pytest.approx(2.0)


class RandomResponse:
    """A response model with arbitrary scores: the property must hold whatever the model says."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        return self.rng.random(len(data))


@settings(max_examples=150, deadline=None)
@given(
    consents=st.fixed_dictionaries({c: st.booleans() for c in CONSENT_FIELDS}),
    sent_day=st.fixed_dictionaries({ch: st.integers(0, 2) for ch in CATALOG.channels}),
    sent_week=st.fixed_dictionaries({ch: st.integers(0, 4) for ch in CATALOG.channels}),
    hours=st.one_of(st.none(), st.floats(0, 200)),
    hour=st.integers(0, 23),
    seed=st.integers(0, 2**16),
    epsilon=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_no_decision_ever_violates_consent_or_caps(
    consents: dict[str, bool],
    sent_day: dict[str, int],
    sent_week: dict[str, int],
    hours: float | None,
    hour: int,
    seed: int,
    epsilon: float,
) -> None:
    sent_week = {ch: max(sent_week[ch], sent_day[ch]) for ch in sent_week}
    meta = {
        "action_columns": {"action_channel": list(CATALOG.channel_names), "action_content": list(CATALOG.content_names)}
    }
    models = ModelSet(response=LoadedModel("response", "r", "1", RandomResponse(seed), ("x",), meta))
    engine = DecisionEngine(CATALOG, POLICIES, models, exploration_rate=epsilon, rng=np.random.default_rng(seed))
    state = ContactState(
        consents=consents, sent_day=dict(sent_day), sent_week=dict(sent_week), hours_since_last_contact=hours
    )
    now = pd.Timestamp("2026-03-02", tz="UTC") + pd.Timedelta(hours=hour)
    decision = engine.decide("c1", pd.DataFrame({"x": [0.0], "cart_open": [1.0]}), state, now)

    for proposed in [decision.action, *decision.alternatives]:
        if proposed.channel == "none":
            continue
        consent = CONSENT_COLUMNS.get(proposed.channel)
        assert consent is None or consents[consent], proposed
        if proposed.channel in POLICIES.uncapped_channels:
            continue
        cap = POLICIES.caps.channels.get(proposed.channel)
        if cap is not None and cap.per_day is not None:
            assert sent_day[proposed.channel] < cap.per_day
        if cap is not None and cap.per_week is not None:
            assert sent_week[proposed.channel] < cap.per_week
        capped = [ch for ch in sent_week if ch not in POLICIES.uncapped_channels]
        assert sum(sent_week[ch] for ch in capped) < (POLICIES.caps.overall.per_week or 10**9)
        assert sum(sent_day[ch] for ch in capped) < (POLICIES.caps.overall.per_day or 10**9)
        assert hours is None or hours >= POLICIES.min_gap_hours
