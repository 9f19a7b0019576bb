"""Outbound policies run on the journey simulator for evaluation: parcours (NBA) and the baselines it must beat.

Every policy except `none` sees only what a real engine would see: the history so far, turned into features
for the customers being decided, as of now, by the same feature code serving uses (`features.build` +
request-time features), and the contact policies (consent, caps, gap, suppression) through
`features.policy_state.contact_state`. The oracle alone reads the simulator's latent truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_features
from features.definitions import CONSENT_CHANNELS
from features.policy_state import contact_state
from features.request import add_request_features
from journey.catalog import NO_ACTION, Action, Catalog
from journey.decision import DecisionEngine
from journey.playbook import Signals, playbook_action
from journey.policies import ContactPolicies, ContactState
from journey.scoring import ModelSet
from journey.simulator import DecisionContext, Decisions
from journey.vocabulary import NO_CONTACT, PURCHASE_EVENTS, EventType

# --------------------------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class Observation:
    """What an engine knows about the customers being decided (rows in `context.customer_ids` order)."""

    customer_ids: np.ndarray
    features: pd.DataFrame  # snapshot + request-time features, index 0..n-1
    states: list[ContactState]
    now: pd.Timestamp


class Observer:
    """Builds features for just the customers being decided, as of now, from the history so far."""

    def __init__(self, customers: pd.DataFrame) -> None:
        self._signup = pd.to_datetime(customers.set_index("customer_id")["signup_ts"], utc=True)

    def observe(self, context: DecisionContext) -> Observation:
        ids = np.asarray(context.customer_ids, dtype=object)
        wanted = set(ids.tolist())
        events = context.history.events()
        events = events.loc[events["customer_id"].isin(wanted)]
        contacts = context.history.contacts()
        contacts = contacts.loc[contacts["customer_id"].isin(wanted)]
        customers = self._customers(context, events)
        built = build_features(customers, events, contacts, [context.now])
        features = built.set_index("customer_id").reindex(ids).reset_index(drop=True)
        features = add_request_features(features, context.now)
        records: list[dict[str, Any]] = features.to_dict("records")  # type: ignore[assignment]
        states = [contact_state(row, [], context.now) for row in records]
        return Observation(ids, features, states, context.now)

    def _customers(self, context: DecisionContext, events: pd.DataFrame) -> pd.DataFrame:
        """Sign-up dates the brand knows (warm-up table, else the sign-up event), current consents."""
        ids = pd.Index(np.asarray(context.customer_ids, dtype=object))
        signup = self._signup.reindex(ids)
        signups = events.loc[events["event_type"] == EventType.SIGNUP.value].groupby("customer_id")["ts"].min()
        signup = signup.fillna(pd.to_datetime(signups.reindex(ids), utc=True))
        signup = signup.where(~(signup.isna() & np.asarray(context.identified)), context.now - pd.Timedelta(hours=1))
        frame = pd.DataFrame({"customer_id": ids.to_numpy(), "signup_ts": signup.to_numpy()})
        frame["signup_ts"] = pd.to_datetime(frame["signup_ts"], utc=True).where(np.asarray(context.identified))
        n = len(ids)
        for column in CONSENT_CHANNELS:
            frame[column] = context.consents.get(column, np.zeros(n, dtype=bool))
        return frame


# ------------------------------------------------------------------------------------------------ policies


def _decisions(actions: list[Action], propensity: np.ndarray, name: str) -> Decisions:
    return Decisions(
        channel=np.array([a.channel for a in actions], dtype=object),
        content=np.array([a.content for a in actions], dtype=object),
        propensity=np.asarray(propensity, dtype=np.float64),
        policy=name,
    )


class NoContactPolicy:
    """Never contacts anyone: the counterfactual every incremental figure is measured against."""

    name = "none"

    def decide(self, context: DecisionContext) -> Decisions:
        n = len(context.customer_ids)
        return _decisions([NO_ACTION] * n, np.ones(n), self.name)


class ObservingPolicy:
    """Base for policies that look at features and respect consent and the contact policies."""

    name = "observing"

    def __init__(self, catalog: Catalog, policies: ContactPolicies, observer: Observer) -> None:
        self.catalog = catalog
        self.policies = policies
        self.observer = observer
        self.reasons: dict[str, int] = {}

    def decide(self, context: DecisionContext) -> Decisions:
        observation = self.observer.observe(context)
        consent_ok = context.allowed()
        index = {a: j for j, a in enumerate(context.catalog.actions)}
        hour = observation.now.hour

        def allowed(i: int) -> Callable[[Action], bool]:
            def check(action: Action) -> bool:
                if action.channel == NO_CONTACT:
                    return True
                j = index.get(action)
                return (
                    j is not None
                    and bool(consent_ok[i, j])
                    and self.policies.violation(action, observation.states[i], self.catalog, hour) is None
                )

            return check

        actions, propensity = self.choose(context, observation, allowed)
        return _decisions(actions, propensity, self.name)

    def choose(
        self, context: DecisionContext, observation: Observation, allowed: Callable[[int], Callable[[Action], bool]]
    ) -> tuple[list[Action], np.ndarray]:
        raise NotImplementedError

    def _count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


class RandomAllowedPolicy(ObservingPolicy):
    """Uniform over the actions consent and the contact policies allow; no contact when none is."""

    name = "random"

    def __init__(self, catalog: Catalog, policies: ContactPolicies, observer: Observer, seed: int = 0) -> None:
        super().__init__(catalog, policies, observer)
        self._rng = np.random.default_rng([seed, 11])

    def choose(
        self, context: DecisionContext, observation: Observation, allowed: Callable[[int], Callable[[Action], bool]]
    ) -> tuple[list[Action], np.ndarray]:
        actions, propensity = [], []
        for i in range(len(observation.customer_ids)):
            options = [a for a in self.catalog.actions if allowed(i)(a)]
            if not options:
                actions.append(NO_ACTION)
                propensity.append(1.0)
                continue
            actions.append(options[int(self._rng.integers(len(options)))])
            propensity.append(1.0 / len(options))
        return actions, np.array(propensity)


def signals_from_features(row: dict[str, Any]) -> Signals:
    """The CRM view of one feature row (NaN = unknown)."""

    def number(name: str) -> float | None:
        value = row.get(name)
        return None if value is None or value != value else float(value)

    return Signals(
        identified=(number("is_identified") or 0.0) >= 0.5,
        cart_abandoned=(number("cart_abandoned_7d") or 0.0) >= 1,
        days_since_purchase=number("days_since_last_purchase"),
        days_since_last_event=number("days_since_last_event"),
        product_views_7d=int(number("product_views_7d") or 0),
    )


class PlaybookPolicy(ObservingPolicy):
    """The marketer's rules by situation (journey.playbook)."""

    name = "rules"

    def choose(
        self, context: DecisionContext, observation: Observation, allowed: Callable[[int], Callable[[Action], bool]]
    ) -> tuple[list[Action], np.ndarray]:
        actions = []
        records: list[dict[str, Any]] = observation.features.to_dict("records")  # type: ignore[assignment]
        for i, row in enumerate(records):
            action, why = playbook_action(signals_from_features(row), self.catalog, allowed(i))
            self._count(why)
            actions.append(action)
        return actions, np.ones(len(actions))


class BlastPolicy(ObservingPolicy):
    """One action sent to everyone it is allowed for."""

    name = "blast"

    def __init__(self, catalog: Catalog, policies: ContactPolicies, observer: Observer, action: Action) -> None:
        super().__init__(catalog, policies, observer)
        self.action = action

    def choose(
        self, context: DecisionContext, observation: Observation, allowed: Callable[[int], Callable[[Action], bool]]
    ) -> tuple[list[Action], np.ndarray]:
        n = len(observation.customer_ids)
        actions = [self.action if allowed(i)(self.action) else NO_ACTION for i in range(n)]
        return actions, np.ones(n)


class OraclePolicy(ObservingPolicy):
    """Knows the true response: the allowed action with the highest true net value, if positive."""

    name = "oracle"

    def choose(
        self, context: DecisionContext, observation: Observation, allowed: Callable[[int], Callable[[Action], bool]]
    ) -> tuple[list[Action], np.ndarray]:
        n = len(observation.customer_ids)
        candidates = list(self.catalog.actions)
        values = np.full((n, len(candidates)), -np.inf)
        for j, action in enumerate(candidates):
            truth = context.truth.response(action.channel, action.content)
            values[:, j] = truth.net_value
        for i in range(n):
            check = allowed(i)
            for j, action in enumerate(candidates):
                if not check(action):
                    values[i, j] = -np.inf
        best = values.argmax(axis=1) if candidates else np.zeros(n, dtype=int)
        actions = [candidates[int(best[i])] if candidates and values[i, best[i]] > 0 else NO_ACTION for i in range(n)]
        return actions, np.ones(n)


class NBAPolicy(ObservingPolicy):
    """parcours: the DecisionEngine with the trained models, the catalog and the contact policies."""

    name = "nba"

    def __init__(self, engine: DecisionEngine, observer: Observer) -> None:
        super().__init__(engine.catalog, engine.policies, observer)
        self.engine = engine

    def decide(self, context: DecisionContext) -> Decisions:
        observation = self.observer.observe(context)
        consent_ok = context.allowed()
        index = {a: j for j, a in enumerate(context.catalog.actions)}
        channels, contents, propensity = self._decide_all(observation)
        actions = []
        for i, (channel, content) in enumerate(zip(channels, contents, strict=True)):
            action = Action(str(channel), str(content))
            if action.channel != NO_CONTACT and not consent_ok[i, index[action]]:
                action = NO_ACTION  # features and consents disagree: never contact without consent
            actions.append(action)
        return _decisions(actions, propensity, self.name)

    def _decide_all(self, observation: Observation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = [str(c) for c in observation.customer_ids]
        return decide_all(self.engine, ids, observation.features, observation.states, observation.now)


def decide_all(
    engine: DecisionEngine, ids: list[str], features: pd.DataFrame, states: list[ContactState], now: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channel, content, propensity) per customer: the engine's batch path when it has one, else one by one."""
    import journey.policies as policies_module

    batch = getattr(engine, "decide_batch", None)
    states_type = getattr(policies_module, "ContactStates", None)
    if callable(batch) and states_type is not None and len(ids):
        decided = batch(ids, features, states_type.from_states(states), now, top_k=0)
        return (
            np.asarray(decided.channel, dtype=object),
            np.asarray(decided.content, dtype=object),
            np.asarray(decided.propensity, dtype=np.float64),
        )
    one = [engine.decide(cid, features.iloc[[i]], states[i], now) for i, cid in enumerate(ids)]
    return (
        np.array([d.action.channel for d in one], dtype=object),
        np.array([d.action.content for d in one], dtype=object),
        np.array([d.propensity for d in one], dtype=np.float64),
    )


def nba_engine(
    catalog: Catalog, policies: ContactPolicies, models: ModelSet, seed: int, epsilon: float = 0.0
) -> DecisionEngine:
    return DecisionEngine(
        catalog=catalog,
        policies=policies,
        models=models,
        exploration_rate=epsilon,
        policy_name="nba",
        rng=np.random.default_rng([seed, 13]),
    )


# ------------------------------------------------------------------------------------ the honest blast pick


def consent_at(customers: pd.DataFrame, events: pd.DataFrame, customer_id: pd.Series, ts: pd.Series) -> pd.DataFrame:
    """Consent per consent column at each (customer, ts): today's flag, or an unsubscribe after ts (it was
    granted then). The contract's point-in-time rule, for logged decisions."""
    out = pd.DataFrame(index=customer_id.index)
    flags = customers.set_index("customer_id")
    unsub = events.loc[events["event_type"] == EventType.UNSUBSCRIBE.value]
    for column, channel in CONSENT_CHANNELS.items():
        today = flags[column].reindex(customer_id.to_numpy()).fillna(False).to_numpy(dtype=bool) if column in flags \
            else np.zeros(len(customer_id), dtype=bool)  # fmt: skip
        last = unsub.loc[unsub["channel"] == channel].groupby("customer_id")["ts"].max()
        last_ts = pd.to_datetime(last.reindex(customer_id.to_numpy()), utc=True).to_numpy()
        later = ~pd.isna(last_ts) & (last_ts > pd.to_datetime(ts, utc=True).to_numpy())
        out[column] = today | later
    return out


def revenue_after(contacts: pd.DataFrame, events: pd.DataFrame, days: int) -> np.ndarray:
    """Purchase revenue of each contact's customer in (ts, ts + days]."""
    buys = events.loc[events["event_type"].isin(list(PURCHASE_EVENTS)), ["customer_id", "ts", "value"]]
    buys = buys.sort_values("ts", kind="stable")
    grouped = {cid: (g["ts"].to_numpy(), np.r_[0.0, np.nan_to_num(g["value"].to_numpy(float)).cumsum()])
               for cid, g in buys.groupby("customer_id", sort=False)}  # fmt: skip
    out = np.zeros(len(contacts))
    window = np.timedelta64(days, "D")
    for i, (cid, ts) in enumerate(zip(contacts["customer_id"], pd.to_datetime(contacts["ts"], utc=True).to_numpy(),
                                      strict=True)):  # fmt: skip
        found = grouped.get(cid)
        if found is None:
            continue
        times, running = found
        lo, hi = np.searchsorted(times, ts, side="right"), np.searchsorted(times, ts + window, side="right")
        out[i] = running[hi] - running[lo]
    return out


def best_constant_action(
    customers: pd.DataFrame, events: pd.DataFrame, contacts: pd.DataFrame, catalog: Catalog, window_days: int
) -> tuple[Action, pd.DataFrame]:
    """The single action with the best average net revenue per decided customer on randomized logs.

    Per action a on channel c: (mean revenue after a − mean revenue after "none" among customers who had
    consent c) − cost of c, times the share of decisions with consent c (a blast reaches only them). Both means
    come from the randomized logging policy, so the difference is an unbiased effect estimate.
    """
    end = pd.to_datetime(events["ts"], utc=True).max()
    logged = contacts.loc[pd.to_datetime(contacts["ts"], utc=True) + pd.Timedelta(days=window_days) <= end]
    logged = logged.reset_index(drop=True)
    revenue = revenue_after(logged, events, window_days)
    consent = consent_at(customers, events, logged["customer_id"], logged["ts"])
    none = (logged["channel"] == NO_CONTACT).to_numpy()
    rows = []
    for action in catalog.actions:
        column = catalog.channels[action.channel].consent
        ok = consent[column].to_numpy() if column else np.ones(len(logged), dtype=bool)
        treated = ((logged["channel"] == action.channel) & (logged["content"] == action.content)).to_numpy()
        if treated.sum() < 5 or (none & ok).sum() < 5:
            continue
        effect = float(revenue[treated].mean() - revenue[none & ok].mean())
        cost = catalog.channels[action.channel].cost
        rows.append(
            {
                "action": action.key,
                "n_treated": int(treated.sum()),
                "revenue_uplift": effect,
                "cost": cost,
                "reach": float(ok.mean()),
                "value_per_decision": float(ok.mean() * (effect - cost)),
            }
        )
    table = pd.DataFrame(rows).sort_values("value_per_decision", ascending=False, ignore_index=True)
    channel, content = str(table.loc[0, "action"]).split(":")
    return Action(channel, content), table
