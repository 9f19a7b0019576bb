"""Decision rules: consent, phase eligibility, uplift ranking, 'none' as a valid answer, exact propensities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from journey.catalog import Action, Catalog, load_catalog
from journey.decision import DecisionEngine
from journey.policies import ContactPolicies, ContactState, load_policies
from journey.scoring import LoadedModel, ModelSet
from journey.vocabulary import CONSENT_FIELDS, PHASES

NOW = pd.Timestamp("2026-03-02 10:00", tz="UTC")


class TablePredictor:
    """Predicts from the action codes only: p = table(channel, content); controls (channel 'none') get base."""

    def __init__(self, catalog: Catalog, table: Callable[[str, str], float]) -> None:
        self.channels = list(catalog.channel_names)
        self.contents = list(catalog.content_names)
        self.table = table

    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        return np.array([self.table(self.channels[int(c)], self.contents[int(k)]) for c, k in data[:, -2:]])


class ConstantPhase:
    def __init__(self, phase: str) -> None:
        self.row = np.array([[1.0 if p == phase else 0.0 for p in PHASES]])

    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        return np.repeat(self.row, len(data), axis=0)


def models(catalog: Catalog, phase: str, table: Callable[[str, str], float]) -> ModelSet:
    meta = {
        "action_columns": {
            "action_channel": list(catalog.channel_names),
            "action_content": list(catalog.content_names),
        }
    }
    return ModelSet(
        phase=LoadedModel("phase", "p", "1", ConstantPhase(phase), ("x",), {"classes": list(PHASES)}),
        response=LoadedModel("response", "r", "1", TablePredictor(catalog, table), ("x",), meta),
    )


def engine(phase: str, table: Callable[[str, str], float], **kwargs: Any) -> DecisionEngine:
    catalog = load_catalog()
    return DecisionEngine(catalog, ContactPolicies(), models(catalog, phase, table), **kwargs)


def everyone_consents() -> ContactState:
    return ContactState(consents=dict.fromkeys(CONSENT_FIELDS, True))


FEATURES = pd.DataFrame({"x": [1.0], "cart_open": [1.0]})


def test_highest_incremental_value_wins_not_highest_propensity() -> None:
    # product_recommendation has the highest raw response but the customer would buy anyway (base 0.5);
    # cart_reminder by email has a lower response but a real uplift.
    def table(channel: str, content: str) -> float:
        if channel == "none":
            return 0.5 if content == "product_recommendation" else 0.05
        return {"product_recommendation": 0.52, "cart_reminder": 0.35}.get(content, 0.05)

    decision = engine("purchase", table).decide("c1", FEATURES, everyone_consents(), NOW)
    assert decision.action.content == "cart_reminder"
    assert decision.action.uplift == pytest.approx(0.30)
    assert decision.phase == "purchase"
    assert decision.alternatives[0].score <= decision.action.score


def test_no_contact_when_nothing_pays_for_its_cost() -> None:
    decision = engine("purchase", lambda channel, content: 0.2).decide("c1", FEATURES, everyone_consents(), NOW)
    assert decision.action.channel == "none"
    assert any("no contact" in reason for reason in decision.reasons)


def test_channel_without_consent_is_never_chosen() -> None:
    # E-mail would be the best action by far, but there is no e-mail consent.
    def table(channel: str, content: str) -> float:
        return 0.9 if channel == "email" else (0.05 if channel == "none" else 0.1)

    state = ContactState(consents={field: field != "consent_email" for field in CONSENT_FIELDS})
    decision = engine("purchase", table).decide("c1", FEATURES, state, NOW)
    assert decision.action.channel != "email"
    assert all(a.channel != "email" for a in decision.alternatives)
    assert any(e.channel == "email" and "no consent" in e.reason for e in decision.excluded)


def test_contents_follow_the_phase() -> None:
    decision = engine("discovery", lambda channel, content: 0.0 if channel == "none" else 0.5).decide(
        "c1", FEATURES, everyone_consents(), NOW
    )
    catalog = load_catalog()
    for scored in [decision.action, *decision.alternatives]:
        if scored.channel != "none":
            assert "discovery" in catalog.contents[scored.content].phases
    assert any("not for phase discovery" in e.reason for e in decision.excluded)


def test_eligibility_rule_needs_its_feature() -> None:
    # cart_reminder requires cart_open >= 1 (an open cart): without the feature it is excluded.
    no_cart = pd.DataFrame({"x": [1.0], "cart_open": [0.0]})
    decision = engine("purchase", lambda channel, content: 0.0 if channel == "none" else 0.5).decide(
        "c1", no_cart, everyone_consents(), NOW
    )
    assert any(e.content == "cart_reminder" and "cart_open" in e.reason for e in decision.excluded)


def test_exploration_logs_exact_propensity() -> None:
    rng = np.random.default_rng(0)
    e = engine("purchase", lambda channel, content: 0.05 if channel == "none" else 0.3, exploration_rate=0.5, rng=rng)
    decisions = [e.decide("c1", FEATURES, everyone_consents(), NOW) for _ in range(200)]
    n_candidates = len(decisions[0].alternatives) + 1
    greedy = [d for d in decisions if not d.explored]
    assert greedy and all(d.propensity == pytest.approx(0.5 + 0.5 / n_candidates) for d in greedy)
    explored = [d for d in decisions if d.explored]
    assert explored and all(d.propensity == pytest.approx(0.5 / n_candidates) for d in explored)


def test_policies_block_capped_channel() -> None:
    state = everyone_consents()
    state.sent_week["email"] = 2
    catalog = load_catalog()
    email_wins = models(catalog, "purchase", lambda channel, content: 0.9 if channel == "email" else 0.0)
    decision = DecisionEngine(catalog, load_policies(), email_wins).decide("c1", FEATURES, state, NOW)
    assert decision.action.channel != "email"
    assert any("frequency cap" in e.reason for e in decision.excluded if e.channel == "email")


def test_without_response_model_the_playbook_still_answers() -> None:
    catalog = load_catalog()
    no_response = ModelSet(phase=models(catalog, "purchase", lambda c, k: 0.0).phase)
    decision = DecisionEngine(catalog, ContactPolicies(), no_response).decide("c1", FEATURES, everyone_consents(), NOW)
    assert decision.action.channel != "none"
    assert any("no response model" in reason for reason in decision.reasons)


def test_action_key_is_readable() -> None:
    assert Action("email", "cart_reminder").key == "email:cart_reminder"


def test_expected_opt_out_cost_moves_the_contact_to_a_channel_without_one() -> None:
    # cart_reminder works a little better by e-mail than on the web, but e-mail opt-outs cost consent.
    def table(channel: str, content: str) -> float:
        if channel == "none":
            return 0.05
        return {"email": 0.40, "web": 0.35}.get(channel, 0.05) if content == "cart_reminder" else 0.05

    catalog = load_catalog().model_copy(update={"consent_value": 20.0, "pressure_cost": 0.05})
    ms = models(catalog, "purchase", table)
    response = ms.response
    assert response is not None
    rated = LoadedModel(
        "response", "r", "1", response.predictor, ("x",), {**response.metadata, "opt_out_rate": {"email": 0.1}}
    )
    priced = DecisionEngine(catalog, ContactPolicies(), ModelSet(phase=ms.phase, response=rated))
    decision = priced.decide("c1", FEATURES, everyone_consents(), NOW)
    assert (decision.action.channel, decision.action.content) == ("web", "cart_reminder")
    by_email = next(a for a in decision.alternatives if a.channel == "email" and a.content == "cart_reminder")
    assert by_email.cost == pytest.approx(catalog.channels["email"].cost + 0.05 + 0.1 * 20.0)
    free = DecisionEngine(catalog.model_copy(update={"consent_value": 0.0}), ContactPolicies(), priced.models)
    assert free.decide("c1", FEATURES, everyone_consents(), NOW).action.channel == "email"


def test_pressure_cost_keeps_contacts_that_are_worth_almost_nothing_from_being_sent() -> None:
    # cart_reminder on the web (free channel) adds 0.001 × 35 = 0.035: worth sending only if contacts cost nothing.
    def table(channel: str, content: str) -> float:
        if channel == "none":
            return 0.05
        return 0.051 if (channel, content) == ("web", "cart_reminder") else 0.05

    for pressure, expected in ((0.0, "web"), (0.05, "none")):
        catalog = load_catalog().model_copy(update={"consent_value": 0.0, "pressure_cost": pressure})
        decision = DecisionEngine(catalog, ContactPolicies(), models(catalog, "purchase", table)).decide(
            "c1", FEATURES, everyone_consents(), NOW
        )
        assert decision.action.channel == expected
