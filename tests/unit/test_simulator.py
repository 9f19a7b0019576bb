"""The journey simulator: determinism, contract shape, funnel logic, consents, propensities and its truths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey.catalog import Catalog, load_catalog
from journey.simulator import (
    DecisionContext,
    Decisions,
    JourneyEnvironment,
    RandomLoggingPolicy,
    SimulatedData,
    SimulationConfig,
    read_simulation,
    simulate,
    true_response,
    write_simulation,
)
from journey.vocabulary import CONSENT_FIELDS, EVENT_CHANNELS, NO_CONTACT, NO_CONTENT, EventType

START = pd.Timestamp("2024-03-01", tz="UTC")
SMALL = SimulationConfig(customers=500, days=60, seed=7, start=START)


class SpyPolicy:
    """Wraps the logging policy and remembers how many actions each customer was allowed."""

    def __init__(self, catalog: Catalog, none_share: float) -> None:
        self.inner = RandomLoggingPolicy(catalog, none_share, seed=1)
        self.allowed: list[np.ndarray] = []

    def decide(self, context: DecisionContext) -> Decisions:
        self.allowed.append(context.allowed().sum(axis=1))
        return self.inner.decide(context)


@pytest.fixture(scope="module")
def data() -> SimulatedData:
    return simulate(SMALL)


def test_same_config_gives_identical_frames(data: SimulatedData) -> None:
    again = simulate(SMALL)
    for name in ("customers", "events", "contacts"):
        pd.testing.assert_frame_equal(getattr(data, name), getattr(again, name))
    for name, frame in data.truth.items():
        pd.testing.assert_frame_equal(frame, again.truth[name])


def test_another_seed_gives_other_data(data: SimulatedData) -> None:
    other = simulate(SimulationConfig(customers=500, days=60, seed=8, start=START))
    assert not data.events.equals(other.events)
    assert not data.contacts["ts"].equals(other.contacts["ts"])


def test_frames_follow_the_contract(data: SimulatedData) -> None:
    catalog = load_catalog()
    customers, events, contacts = data.customers, data.events, data.contacts
    assert customers["customer_id"].is_unique
    assert str(customers["signup_ts"].dtype) == "datetime64[us, UTC]"
    assert customers["signup_ts"].isna().any() and customers["signup_ts"].notna().any()
    for column in CONSENT_FIELDS:
        assert customers[column].dtype == bool
    assert {"region", "age_band"} <= set(customers.columns)

    assert list(events.columns) == ["customer_id", "ts", "event_type", "channel", "content", "value"]
    assert str(events["ts"].dtype) == "datetime64[us, UTC]"
    assert events["value"].dtype == np.float64
    assert set(events["event_type"]) <= {e.value for e in EventType}
    assert set(events["channel"]) <= EVENT_CHANNELS
    assert set(events["content"].dropna()) <= set(catalog.contents)
    assert events["ts"].is_monotonic_increasing
    assert set(events["customer_id"]) <= set(customers["customer_id"])
    end = START + pd.Timedelta(days=SMALL.days)
    assert events["ts"].max() < end and contacts["ts"].max() < end

    assert list(contacts.columns) == ["decision_id", "customer_id", "ts", "channel", "content", "propensity", "policy"]
    assert contacts["decision_id"].is_unique
    assert str(contacts["ts"].dtype) == "datetime64[us, UTC]"
    actions = {(a.channel, a.content) for a in catalog.actions} | {(NO_CONTACT, NO_CONTENT)}
    assert set(zip(contacts["channel"], contacts["content"], strict=True)) <= actions
    assert set(contacts["policy"]) == {"random"}
    assert 0.2 < (contacts["channel"] == NO_CONTACT).mean() < 0.4


def test_ground_truth_is_separate_and_complete(data: SimulatedData) -> None:
    truth = data.truth
    assert {"phase_history", "traits", "contact_outcomes"} <= set(truth)
    phases = {"discovery", "consideration", "purchase", "service", "advocacy", "dormant", "churned"}
    assert set(truth["phase_history"]["phase"]) <= phases
    assert len(set(truth["phase_history"]["phase"])) >= 6  # a rich mix, drift-outs included
    outcomes = truth["contact_outcomes"]
    assert set(outcomes["decision_id"]) == set(data.contacts["decision_id"])
    assert not outcomes.loc[outcomes["goal_caused"], "engaged"].eq(False).any()
    none = outcomes["decision_id"].isin(data.contacts.loc[data.contacts["channel"] == NO_CONTACT, "decision_id"])
    assert not outcomes.loc[none, "engaged"].any()


def test_funnel_is_monotone_and_ordered(data: SimulatedData) -> None:
    events = data.events
    counts = events["event_type"].value_counts()
    assert counts["product_view"] >= counts["add_to_cart"] >= counts["checkout"] >= counts["purchase"] > 0
    assert counts.get("store_purchase", 0) > 0
    first = events.groupby(["customer_id", "event_type"])["ts"].min().unstack()
    checked_out = first["checkout"].notna()
    assert (first.loc[checked_out, "add_to_cart"] < first.loc[checked_out, "checkout"]).all()
    bought = first["purchase"].notna()
    assert (first.loc[bought, "checkout"] < first.loc[bought, "purchase"]).all()


def test_no_event_before_arrival(data: SimulatedData) -> None:
    arrival = data.truth["traits"].set_index("customer_id")["arrival_ts"]
    first = data.events.groupby("customer_id")["ts"].min()
    assert (first >= arrival.reindex(first.index)).all()
    first_contact = data.contacts.groupby("customer_id")["ts"].min()
    assert (first_contact > arrival.reindex(first_contact.index)).all()
    new = arrival[arrival >= START]
    first_new = first.reindex(new.index).dropna()
    assert (first_new == new.reindex(first_new.index)).all()  # a new visitor's first event is the arrival


def test_known_buyers_come_with_their_order_history() -> None:
    """Buyers known before the window have their past orders in the log (after their sign-up), like a CRM's order
    history; the latent purchase count is what the log shows. Off (the default), the log starts empty."""
    env = JourneyEnvironment(SimulationConfig(customers=500, days=60, seed=7, start=START, log_prior_purchases=True))
    before = env.collect()
    orders = before.events.loc[before.events["ts"] < START]
    assert len(orders) and set(orders["event_type"]) <= {"purchase", "store_purchase"}
    assert (orders["value"] > 0).all()
    traits = before.truth["traits"].set_index("customer_id")
    buyers = traits.index[traits["initial_phase"].isin(["service", "advocacy"])]
    assert set(buyers) <= set(orders["customer_id"])  # every known service/advocacy customer has bought
    assert not set(orders["customer_id"]) & set(traits.index[traits["initial_phase"].isin(["discovery", "purchase"])])
    signup = before.customers.set_index("customer_id")["signup_ts"]
    assert (orders["ts"].to_numpy() > signup.reindex(orders["customer_id"]).to_numpy()).all()
    counted = pd.Series(env.world.state.n_purchases, index=env.customer_ids)
    assert counted.reindex(orders["customer_id"].unique()).eq(orders.groupby("customer_id").size()).all()
    assert (JourneyEnvironment(SMALL).collect().events["ts"] >= START).all()  # the default: the log starts empty
    with pytest.raises(ValueError, match="prior_purchase_gap_days"):
        SimulationConfig(customers=10, days=5, log_prior_purchases=True, prior_purchase_gap_days=0)


def test_contacts_respect_consent_at_the_time(data: SimulatedData) -> None:
    catalog = load_catalog()
    customers = data.customers.set_index("customer_id")
    unsubscribes = data.events[data.events["event_type"] == "unsubscribe"]
    assert len(unsubscribes) > 0
    withdrawn = [catalog.channels[c].consent for c in unsubscribes["channel"]]
    assert not any(customers.at[c, w] for c, w in zip(unsubscribes["customer_id"], withdrawn, strict=True))

    consent_of = {name: spec.consent for name, spec in catalog.channels.items()}
    contacts = data.contacts[data.contacts["channel"].map(consent_of).notna()]
    contacts = contacts.assign(consent=contacts["channel"].map(consent_of))
    first_unsubscribe = unsubscribes.groupby(["customer_id", "channel"])["ts"].min().rename("unsubscribed")
    merged = contacts.join(first_unsubscribe, on=["customer_id", "channel"])
    assert len(merged) > 100
    assert not (merged["unsubscribed"] < merged["ts"]).any(), "contacted after unsubscribing"
    final = np.array([customers.at[c, k] for c, k in zip(merged["customer_id"], merged["consent"], strict=True)])
    assert (final | (merged["unsubscribed"] > merged["ts"]).to_numpy()).all()
    known = merged[merged["consent"] != "consent_ads"]  # every other consent is given at sign-up
    signup = customers["signup_ts"].reindex(known["customer_id"]).to_numpy()
    assert (signup <= known["ts"].to_numpy()).all(), "contacted an anonymous visitor"


def test_propensities_are_the_exact_logging_probabilities() -> None:
    catalog = load_catalog()
    spy = SpyPolicy(catalog, none_share=0.3)
    data = simulate(SimulationConfig(customers=300, days=30, seed=3, start=START), policy=spy)
    allowed = np.concatenate(spy.allowed)
    raw = data.truth["contact_outcomes"]  # in time order, like contacts
    contacts = data.contacts.set_index("decision_id").loc[raw["decision_id"]]
    rows = np.array([int(d.split("-")[1]) for d in raw["decision_id"]])  # decision order
    options = allowed[rows]
    propensity = contacts["propensity"].to_numpy()
    assert ((propensity > 0) & (propensity <= 1)).all()
    contacted = (contacts["channel"] != NO_CONTACT).to_numpy()
    np.testing.assert_allclose(propensity[contacted], 0.7 / options[contacted])
    np.testing.assert_allclose(propensity[~contacted], np.where(options[~contacted] > 0, 0.3, 1.0))


def test_logging_policy_frequencies_match_propensities() -> None:
    catalog = load_catalog()
    policy = RandomLoggingPolicy(catalog, none_share=0.3, seed=0)
    n = 20_000
    consents = {c: np.zeros(n, dtype=bool) for c in CONSENT_FIELDS}
    consents["consent_email"][:] = True
    context = DecisionContext(
        day=0,
        now=START,
        customer_ids=np.array([f"c{i}" for i in range(n)], dtype=object),
        consents=consents,
        identified=np.ones(n, dtype=bool),
        history=None,  # type: ignore[arg-type]
        truth=None,  # type: ignore[arg-type]
        catalog=catalog,
    )
    decisions = policy.decide(context)
    assert set(decisions.channel) == {"email", "web", NO_CONTACT}
    allowed = sum(1 for a in catalog.actions if a.channel in {"email", "web"})
    email = decisions.channel == "email"
    assert np.allclose(decisions.propensity[email], 0.7 / allowed)
    share = (decisions.channel == NO_CONTACT).mean()
    assert abs(share - 0.3) < 0.02


def test_policy_that_ignores_consents_is_refused() -> None:
    class Spammer:
        def decide(self, context: DecisionContext) -> Decisions:
            n = len(context.customer_ids)
            return Decisions(
                channel=np.full(n, "sms", dtype=object),
                content=np.full(n, "time_limited_discount", dtype=object),
                propensity=np.ones(n),
                policy="spam",
            )

    with pytest.raises(ValueError, match="without consent_sms"):
        simulate(SimulationConfig(customers=200, days=14, seed=1, start=START), policy=Spammer())


def test_discount_pays_in_purchase_phase_and_wastes_margin_in_discovery() -> None:
    truth = true_response(["purchase", "discovery"], "email", "time_limited_discount")
    purchase, discovery = truth.incremental_value
    assert purchase > 0.3 > 0 > discovery
    assert truth.uplift[0] > 20 * truth.uplift[1]
    assert truth.p_engage[1] > 0.2  # people click on discounts anyway…
    # …and sure things (high organic purchase probability) gain little from it
    keen = true_response("purchase", "email", "time_limited_discount", activity=[0.5, 4.0])
    assert keen.p_goal_control[1] > keen.p_goal_control[0]
    assert keen.uplift[1] / keen.p_engage[1] < keen.uplift[0] / keen.p_engage[0]


def test_content_truths_the_engine_must_discover() -> None:
    def net(phase: str, channel: str, content: str, **kwargs: object) -> float:
        return float(true_response(phase, channel, content, **kwargs).incremental_value[0])  # type: ignore[arg-type]

    assert net("discovery", "email", "educational_guide") > 3 * net("consideration", "email", "educational_guide")
    assert net("purchase", "email", "cart_reminder", cart_open=True) > 0 == net("purchase", "email", "cart_reminder")
    assert net("service", "email", "review_request") > 0 == net("discovery", "email", "review_request")
    assert net("advocacy", "email", "referral_invitation") > 10 * net("service", "email", "referral_invitation")
    assert net("dormant", "email", "win_back_offer") > 5 * net("service", "email", "win_back_offer")
    assert (
        net("discovery", "web", "signup_invitation", identified=False)
        > 0
        == net("discovery", "web", "signup_invitation", identified=True)
    )
    assert net("discovery", "email", "none") == 0 and net("purchase", "none", "none") == 0
    spam = true_response(["advocacy", "discovery"], "email", "referral_invitation")
    assert spam.p_unsubscribe[1] > 2 * spam.p_unsubscribe[0]


def test_a_custom_catalog_still_simulates() -> None:
    catalog = Catalog.model_validate(
        {
            "channels": {
                "whatsapp": {"cost": 0.05, "consent": "consent_whatsapp"},
                "email": {"cost": 0.02, "consent": "consent_email"},
            },
            "contents": {
                "newsletter": {
                    "objective": "consideration",
                    "phases": ["discovery"],
                    "channels": ["email", "whatsapp"],
                    "value": 2,
                },
                "flash_sale": {
                    "objective": "conversion",
                    "phases": ["purchase"],
                    "channels": ["whatsapp"],
                    "value": 15,
                },
            },
        }
    )
    data = simulate(SimulationConfig(customers=300, days=30, seed=2, start=START), catalog=catalog)
    assert "consent_whatsapp" in data.customers.columns
    assert set(data.contacts["channel"]) <= {"whatsapp", "email", NO_CONTACT}
    assert set(data.events["channel"]) <= EVENT_CHANNELS
    truth = true_response("purchase", "whatsapp", "flash_sale", catalog=catalog)
    assert 0 < truth.p_engage[0] < 1 and truth.lift[0] <= 0.05


def test_write_and_read_back(data: SimulatedData, tmp_path: Path) -> None:
    write_simulation(data, tmp_path)
    assert {p.name for p in tmp_path.glob("*.parquet")} == {"customers.parquet", "events.parquet", "contacts.parquet"}
    back = read_simulation(tmp_path)
    pd.testing.assert_frame_equal(back.events, data.events)
    pd.testing.assert_frame_equal(back.truth["contact_outcomes"], data.truth["contact_outcomes"])


def test_the_data_contract_accepts_every_row(data: SimulatedData) -> None:
    contract = pytest.importorskip("journey.contract")
    checked = contract.validate(customers=data.customers, events=data.events, contacts=data.contacts)
    assert checked.problems == []
    assert all(report.rows_quarantined == 0 for report in checked.reports)


def test_common_draws_follow_the_customer_not_the_call() -> None:
    from journey.simulator.draws import CommonDraws

    draws = CommonDraws(seed=3, customers=10)
    draws.start_day(5)
    everyone = draws.uniform("visit", np.arange(10))
    assert np.array_equal(draws.uniform("visit", np.array([7, 2])), everyone[[7, 2]])
    assert not np.array_equal(draws.uniform("store", np.arange(10)), everyone)
    draws.start_day(6)
    assert not np.array_equal(draws.uniform("visit", np.arange(10)), everyone)
    again = CommonDraws(seed=3, customers=10)
    again.start_day(5)
    assert np.array_equal(again.uniform("visit", np.arange(10)), everyone)


def test_keyed_poisson_and_normal_have_the_right_moments() -> None:
    from journey.simulator.draws import CommonDraws

    draws = CommonDraws(seed=0, customers=200_000)
    draws.start_day(0)
    idx = np.arange(200_000)
    counts = draws.poisson("views", idx, np.full(200_000, 2.5))
    assert counts.mean() == pytest.approx(2.5, abs=0.02) and counts.var() == pytest.approx(2.5, abs=0.05)
    z = draws.normal("basket", idx)
    assert z.mean() == pytest.approx(0.0, abs=0.01) and z.std() == pytest.approx(1.0, abs=0.01)


def test_organic_lives_do_not_depend_on_the_shared_stream() -> None:
    """Common random numbers: whatever else consumed the shared generator (another policy's contacts), the same
    customers visit and buy the same way, so policy comparisons measure the policies, not the dice."""

    def organic_purchases(extra_draws: int) -> pd.DataFrame:
        env = JourneyEnvironment(SimulationConfig(customers=300, days=40, seed=4, start=START))
        for day in range(40):
            if day == 20:
                env.world.rng.random(extra_draws)
            env.step(_NoContact())
        events = env.collect().events
        buys = events.loc[events["event_type"].isin(["purchase", "store_purchase"]), ["customer_id", "value"]]
        return buys.sort_values(["customer_id", "value"], ignore_index=True)

    baseline = organic_purchases(0)
    assert len(baseline) > 20
    pd.testing.assert_frame_equal(organic_purchases(17), baseline)


class _NoContact:
    name = "none"

    def decide(self, context: DecisionContext) -> Decisions:
        n = len(context.customer_ids)
        return Decisions(
            channel=np.full(n, NO_CONTACT, dtype=object),
            content=np.full(n, NO_CONTENT, dtype=object),
            propensity=np.ones(n),
            policy=self.name,
        )
