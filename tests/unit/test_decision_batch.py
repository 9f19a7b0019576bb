"""The vectorised engine: batch == single, capacities greedy by value, consent in batch, explained decisions."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journey.catalog import Action, Catalog, load_catalog
from journey.decision import OVER_CAPACITY, DecisionEngine, allocate_capacity
from journey.policies import ContactState, ContactStates, load_policies
from journey.scoring import LoadedModel, ModelSet
from journey.vocabulary import CONSENT_COLUMNS, CONSENT_FIELDS, PHASES

CATALOG = load_catalog()
POLICIES = load_policies()
NOW = pd.Timestamp("2026-03-02 10:00", tz="UTC")
FEATURES = ("x1", "x2", "cart_open")


class HashedResponse:
    """A deterministic 'model' of the features and action codes: the same row always gets the same score,
    whatever else is in the batch (like a real booster). `pred_contrib` splits the logit over the inputs."""

    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        logit = np.sin(data[:, 0] * 3.1 + data[:, -2] * 1.7) + np.cos(data[:, 1] * 2.3 + data[:, -1] * 0.9)
        logit = logit - np.where(data[:, -2] == len(CATALOG.channels), 0.6, 0.0)  # contacts add something
        if kwargs.get("pred_contrib"):
            parts = np.zeros((len(data), data.shape[1] + 1))
            parts[:, 0], parts[:, -3], parts[:, 1] = 0.5 * logit, 0.3 * logit, 0.2 * logit
            return parts
        return 1.0 / (1.0 + np.exp(-logit))


class SoftPhase:
    """Phase probabilities from two features (a softmax), so eligibility varies across customers."""

    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        base = np.arange(len(PHASES))
        logits = -((data[:, :1] * 4 - base) ** 2) + data[:, 1:2] * base * 0.1
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        if kwargs.get("pred_contrib"):
            width = data.shape[1] + 1
            out = np.zeros((len(data), width * len(PHASES)))
            for k in range(len(PHASES)):
                out[:, k * width] = logits[:, k] * 0.1
                out[:, k * width + 1] = -logits[:, k] * 0.4
            return out
        return proba


class Churn:
    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(data[:, 1] - 0.5) * 6))


def model_set(catalog: Catalog = CATALOG) -> ModelSet:
    meta = {
        "action_columns": {"action_channel": list(catalog.channel_names), "action_content": list(catalog.content_names)}
    }
    names = FEATURES[:2]
    return ModelSet(
        phase=LoadedModel("phase", "p", "1", SoftPhase(), names, {"classes": list(PHASES)}),
        churn=LoadedModel("churn", "c", "1", Churn(), names),
        response=LoadedModel("response", "r", "1", HashedResponse(), names, meta),
    )


def random_customers(n: int, seed: int) -> tuple[pd.DataFrame, list[ContactState]]:
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        {"x1": rng.random(n), "x2": rng.random(n), "cart_open": rng.integers(0, 2, n).astype(float)}
    )
    states = [
        ContactState(
            consents={c: bool(rng.random() < 0.7) for c in CONSENT_FIELDS},
            sent_day={ch: int(rng.random() < 0.1) for ch in CATALOG.channels},
            sent_week={ch: int(rng.integers(0, 3)) for ch in CATALOG.channels},
            hours_since_last_contact=None if rng.random() < 0.5 else float(rng.uniform(0, 100)),
            days_since_opt_out=None if rng.random() < 0.9 else 3.0,
            ignored_recent={"email": int(rng.integers(0, 4))},
        )
        for _ in range(n)
    ]
    for state in states:
        state.sent_week = {ch: max(n, state.sent_day[ch]) for ch, n in state.sent_week.items()}
    return features, states


def engine(epsilon: float = 0.0, seed: int = 0, **kwargs: Any) -> DecisionEngine:
    return DecisionEngine(
        CATALOG, POLICIES, kwargs.pop("models", model_set()), exploration_rate=epsilon, rng=np.random.default_rng(seed)
    )


def test_batch_equals_single_on_random_customers() -> None:
    features, states = random_customers(120, seed=1)
    ids = [f"c{i}" for i in range(len(features))]
    batch = engine().decide_batch(ids, features, ContactStates.from_states(states), NOW, top_k=None)
    single = engine()
    contacts = 0
    for k, customer in enumerate(ids):
        decision = single.decide(customer, features.iloc[[k]].reset_index(drop=True), states[k], NOW)
        assert (decision.action.channel, decision.action.content) == (batch.channel[k], batch.content[k])
        assert decision.action.score == batch.score[k]
        assert decision.action.uplift == batch.uplift[k]
        assert decision.propensity == batch.propensity[k]
        assert decision.action.objective_weight == batch.objective_weight[k]
        assert decision.phase == batch.scores.customer.phase[k]
        ranked = [a.action.key for a in decision.alternatives]
        assert ranked == [batch.space.actions[c].key for c in batch.alternatives[k] if c >= 0]
        contacts += decision.action.channel != "none"
    assert 0 < contacts < len(ids)  # the test customers are varied enough to exercise both outcomes


def test_single_exploration_is_batch_exploration_of_one() -> None:
    features, states = random_customers(80, seed=3)
    single, batch = engine(0.3, seed=5), engine(0.3, seed=5)  # the same random stream
    explored = 0
    for k, state in enumerate(states):
        row = features.iloc[[k]].reset_index(drop=True)
        one = batch.decide_batch([f"c{k}"], row, ContactStates.from_states([state]), NOW)
        decision = single.decide(f"c{k}", row, state, NOW)
        assert (decision.action.channel, decision.action.content) == (one.channel[0], one.content[0])
        assert decision.propensity == one.propensity[0] and decision.explored == one.explored[0]
        explored += decision.explored
    assert explored


def test_batch_exploration_propensities_are_exact() -> None:
    features, states = random_customers(400, seed=2)
    eps = 0.4
    decisions = engine(eps, seed=3).decide_batch(
        [f"c{i}" for i in range(400)], features, ContactStates.from_states(states), NOW
    )
    greedy = engine(0.0).decide_batch([f"c{i}" for i in range(400)], features, ContactStates.from_states(states), NOW)
    expected = np.where(
        decisions.column == greedy.column, eps / decisions.n_candidates + 1 - eps, eps / decisions.n_candidates
    )
    np.testing.assert_allclose(decisions.propensity, expected)
    assert decisions.explored.any() and not decisions.explored.all()
    assert (decisions.explored == (decisions.column != greedy.column)).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), hour=st.integers(0, 23), epsilon=st.sampled_from([0.0, 0.5, 1.0]))
def test_batch_never_violates_consent_or_policies(seed: int, hour: int, epsilon: float) -> None:
    features, states = random_customers(60, seed)
    now = NOW.floor("D") + pd.Timedelta(hours=hour)
    decisions = engine(epsilon, seed).decide_batch(
        [f"c{i}" for i in range(60)], features, ContactStates.from_states(states), now, top_k=None
    )
    for k, state in enumerate(states):
        proposed = [decisions.column[k], *(c for c in decisions.alternatives[k] if c >= 0)]
        for column in proposed:
            action = decisions.space.actions[column]
            if action.channel == "none":
                continue
            consent = CONSENT_COLUMNS.get(action.channel)
            assert consent is None or state.consents[consent], (k, action)
            assert POLICIES.violation(action, state, CATALOG, hour) is None, (k, action)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**16), hour=st.integers(0, 23))
def test_vectorised_policies_agree_with_the_readable_rules(seed: int, hour: int) -> None:
    _, states = random_customers(30, seed)
    channels = (*CATALOG.channels, "none", "pigeon")
    codes = POLICIES.violation_codes(ContactStates.from_states(states), channels, CATALOG, hour)
    for k, state in enumerate(states):
        for j, channel in enumerate(channels):
            reason = POLICIES.violation(Action(channel, "x"), state, CATALOG, hour)
            assert (codes[k, j] == 0) == (reason is None), (k, channel, reason, codes[k, j])


def test_capacity_goes_to_the_highest_values_and_the_rest_fall_back() -> None:
    # Column 0 = no contact (0); columns 1, 2 = two actions on capped channel 0; column 3 = uncapped channel 1.
    score = np.array(
        [
            [0.0, 5.0, 4.0, 1.0],  # wants channel 0 (5.0)
            [0.0, 3.0, -np.inf, 2.0],  # wants channel 0 (3.0)
            [0.0, 9.0, 1.0, 0.5],  # wants channel 0 (9.0): the best
            [0.0, 2.0, 8.0, -np.inf],  # wants channel 0 through its second action (8.0)
            [0.0, 1.0, -np.inf, 7.0],  # prefers channel 1: never competes for channel 0
        ]
    )
    channel_index = np.array([2, 0, 0, 1])  # column 0's channel (2) is 'none'
    denied = allocate_capacity(score, channel_index, {0: 2})
    winners = [
        k for k in range(5) if not denied[k, 1:3].any() and np.argmax(np.where(denied[k], -np.inf, score[k])) in (1, 2)
    ]
    assert winners == [2, 3]  # 9.0 and 8.0 win; 5.0 and 3.0 lose
    assert denied[0, 1:3].all() and denied[1, 1]
    remaining = np.where(denied, -np.inf, score)
    assert remaining[0].argmax() == 3 and remaining[1].argmax() == 3  # next best allowed: the uncapped channel
    # Customer 4 never wanted channel 0, but could explore onto it: the full channel is reserved to its holders.
    assert denied[4, 1] and remaining[4].argmax() == 3 and not denied[:, 3].any()
    # A channel with room for everyone who could take it reserves nothing.
    assert not allocate_capacity(score, channel_index, {0: 5}).any()


def test_capacities_hold_in_decide_batch_even_when_exploring() -> None:
    features, states = random_customers(300, seed=4)
    everyone = ContactStates.from_states([ContactState(consents=dict.fromkeys(CONSENT_FIELDS, True)) for _ in states])
    free = engine(0.0).decide_batch([f"c{i}" for i in range(300)], features, everyone, NOW)
    busiest = pd.Series(free.channel).value_counts()
    channel = str(busiest.index[busiest.index != "none"][0])
    wanted = int(busiest[channel])
    capacity = wanted // 3
    for epsilon in (0.0, 0.5):
        decisions = engine(epsilon, seed=9).decide_batch(
            [f"c{i}" for i in range(300)], features, everyone, NOW, capacities={channel: capacity}
        )
        assert (decisions.channel == channel).sum() <= capacity
    greedy = engine(0.0).decide_batch(
        [f"c{i}" for i in range(300)], features, everyone, NOW, capacities={channel: capacity}
    )
    assert (greedy.channel == channel).sum() == capacity
    # The winners are the customers who valued the channel most; the others moved to their next best action.
    winners = greedy.channel == channel
    wanted_it = free.channel == channel
    assert winners[~wanted_it].sum() == 0
    assert free.score[winners].min() >= free.score[wanted_it & ~winners].max()
    losers = wanted_it & ~winners
    on_channel = np.asarray(greedy.space.channel_index) == greedy.space.channels.index(channel)
    loser_codes = greedy.scores.code[losers][:, on_channel]
    assert (loser_codes != 0).all() and (loser_codes == OVER_CAPACITY).any(axis=1).all()
    assert (greedy.score[losers] <= free.score[losers]).all()


def test_unknown_capacity_channel_is_refused() -> None:
    features, states = random_customers(3, seed=0)
    with pytest.raises(ValueError, match="pigeon"):
        engine().decide_batch(
            ["a", "b", "c"], features, ContactStates.from_states(states), NOW, capacities={"pigeon": 1}
        )


def test_explained_decision_has_top_contributions_sorted_by_magnitude() -> None:
    features, states = random_customers(40, seed=6)
    e = engine()
    explained = 0
    for k, state in enumerate(states):
        decision = e.decide(f"c{k}", features.iloc[[k]].reset_index(drop=True), state, NOW, explain=True)
        phase = decision.contributions["phase"]
        assert phase and len(phase) <= 5
        magnitudes = [abs(c.contribution) for c in phase]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert {c.feature for c in phase} <= set(FEATURES)
        if decision.action.channel == "none":
            assert "response" not in decision.contributions
            continue
        explained += 1
        response = decision.contributions["response"]
        assert [abs(c.contribution) for c in response] == sorted((abs(c.contribution) for c in response), reverse=True)
        assert response[0].feature == "x1" and response[0].value == pytest.approx(features.x1[k])
        assert any(r.startswith("uplift driven by") for r in decision.reasons)
        assert any(r.startswith("phase driven by") for r in decision.reasons)
    assert explained
    plain = e.decide("c0", features.iloc[[0]].reset_index(drop=True), states[0], NOW)
    assert plain.contributions == {}


def test_no_contact_customers_and_empty_batch() -> None:
    decisions = engine().decide_batch([], pd.DataFrame({"x1": [], "x2": []}), ContactStates(n=0), NOW)
    assert len(decisions) == 0 and decisions.to_frame().empty
    nobody = ContactStates.from_states([ContactState()])  # no consent at all: only web (no consent needed)
    one = engine().decide_batch(["a"], pd.DataFrame({"x1": [0.5], "x2": [0.5]}), nobody, NOW)
    assert one.channel[0] in ("web", "none")


def test_to_frame_has_one_row_per_customer_with_the_output_columns() -> None:
    features, states = random_customers(25, seed=8)
    frame = (
        engine()
        .decide_batch([f"c{i}" for i in range(25)], features, ContactStates.from_states(states), NOW)
        .to_frame(top_k=2)
    )
    assert list(frame.customer_id) == [f"c{i}" for i in range(25)]
    for column in (
        "phase",
        "churn_risk",
        "purchase_propensity",
        "channel",
        "content",
        "score",
        "uplift",
        "propensity",
        "objective",
        "p_discovery",
        "alt1_action",
        "alt2_score",
    ):
        assert column in frame.columns
    contacted = frame[frame.channel != "none"]
    assert np.allclose(contacted.uplift, contacted.p_response - contacted.p_baseline)


def test_batch_policy_state_from_features_is_the_online_one() -> None:
    from features.policy_state import contact_state
    from serving.batch import contact_states

    now = pd.Timestamp("2026-03-02 10:00", tz="UTC")
    nan = float("nan")
    rows = [
        {"consent_email": 1.0, "consent_sms": nan, "contacts_email_1d": 1.0, "contacts_email_7d": 2.0,
         "contacts_email_30d": 5.0, "response_rate_email_90d": 0.5, "last_contact_epoch_days": 20_513.5,
         "unsubscribes_30d": 0.0},
        {"consent_email": 0.0, "consent_sms": 1.0, "contacts_sms_7d": 1.0, "contacts_email_30d": 3.0,
         "response_rate_email_90d": nan, "last_contact_epoch_days": nan, "unsubscribes_30d": 2.0},
        {},
    ]  # fmt: skip
    frame = pd.DataFrame(rows)
    states = contact_states(frame, now)
    expected = ContactStates.from_states([contact_state({k: v for k, v in r.items()}, [], now) for r in rows])
    for group in ("consents", "sent_day", "sent_week", "ignored_recent"):
        got, want = getattr(states, group), getattr(expected, group)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{group}[{key}]")
    np.testing.assert_allclose(states.hours_since_last_contact, expected.hours_since_last_contact)
    np.testing.assert_array_equal(states.days_since_opt_out, expected.days_since_opt_out)
    assert states.ignored_recent["email"][0] == 2 and states.days_since_opt_out[1] == 0.0  # round(2.5) = 2


def _same(batched: Any, single: Any) -> None:
    """Equal decisions (their ids are drawn at random)."""
    assert dataclasses.replace(batched, decision_id="") == dataclasses.replace(single, decision_id="")


def test_rendered_batch_decisions_equal_single_decisions() -> None:
    """A decision made in a micro-batch is the decision `decide` makes alone: scores, alternatives, exclusions and
    their readable reasons, whether the states are passed per customer or read back from the batch's columns."""
    features, states = random_customers(60, seed=11)
    ids = [f"c{i}" for i in range(len(features))]
    columns = ContactStates.from_states(states)
    batch = engine().decide_batch(ids, features, columns, NOW, top_k=None)
    from_states = engine().decisions(batch, NOW, cold_start=[k % 7 == 0 for k in range(60)], states=states)
    from_columns = engine().decisions(batch, NOW, cold_start=[k % 7 == 0 for k in range(60)], contact_states=columns)
    single = engine()
    policy_reasons = 0
    for k, customer in enumerate(ids):
        alone = single.decide(customer, features.iloc[[k]].reset_index(drop=True), states[k], NOW, k % 7 == 0)
        _same(from_states[k], alone)
        _same(from_columns[k], alone)
        assert from_states[k].customer_id == customer and from_states[k].cold_start == (k % 7 == 0)
        policy_reasons += any(e.reason.startswith(("no consent", "frequency cap")) for e in alone.excluded)
    assert policy_reasons  # the policy texts (the part read back from the columns) were exercised
    assert len({d.decision_id for d in from_states}) == len(ids)


def test_rendered_batch_decisions_keep_exploration_and_propensity_per_customer() -> None:
    features, states = random_customers(300, seed=12)
    ids = [f"c{i}" for i in range(len(features))]
    columns = ContactStates.from_states(states)
    eps = 0.5
    batch = engine(eps, seed=4).decide_batch(ids, features, columns, NOW, top_k=None)
    greedy = engine(0.0).decide_batch(ids, features, columns, NOW, top_k=None)
    decisions = engine(eps).decisions(batch, NOW, contact_states=columns)
    for k, decision in enumerate(decisions):
        chosen = batch.space.actions[batch.column[k]]
        assert (decision.action.channel, decision.action.content) == (chosen.channel, chosen.content)
        explored = bool(batch.column[k] != greedy.column[k])
        assert decision.explored == explored
        assert decision.propensity == pytest.approx(eps / batch.n_candidates[k] + (1 - eps) * (not explored))
        assert ("exploration: chosen at random to keep learning" in decision.reasons) == explored
    assert 0 < sum(d.explored for d in decisions) < len(decisions)
