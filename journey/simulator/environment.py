"""The journey environment: one loop over days, vectorised over customers, with a pluggable outbound policy.

Each day: new visitors arrive, fatigue decays, the customers due for a decision are decided (09:00–10:00 UTC)
and contacted, then the organic day plays out (sessions, web content shown at visits, store purchases,
after-sales) and the latent phases move on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from journey.catalog import Catalog, load_catalog
from journey.simulator.config import (
    ADVOCACY,
    CHURNED,
    CONSIDERATION,
    DAY_US,
    DEFAULT_CONFIG,
    DORMANT,
    HOUR_US,
    SERVICE,
    STATE_NAMES,
    SimulationConfig,
)
from journey.simulator.draws import CommonDraws
from journey.simulator.dynamics import (
    STORE,
    Rates,
    World,
    after_sales,
    churned_returns,
    grant_consents,
    initial_state,
    sessions,
    store_visits,
    transitions,
)
from journey.simulator.logging_policy import (
    DecisionContext,
    Decisions,
    History,
    OutboundPolicy,
    RandomLoggingPolicy,
    TruthView,
)
from journey.simulator.outbound import Outbound
from journey.simulator.population import draw_traits
from journey.simulator.records import EVENT_TYPE_CODE, BoolArray, ContactLog, EventLog, IntArray, to_utc
from journey.simulator.response import GOAL_EVENTS, GOALS, ResponseTables, ResponseTruth
from journey.vocabulary import CONSENT_FIELDS

_TRUTH_COLUMNS = ("p_engage", "lift", "p_goal_control", "uplift", "incremental_value", "net_value", "spam")


@dataclass
class SimulatedData:
    """The three contract frames, plus ground truth that features and training must never read."""

    customers: pd.DataFrame
    events: pd.DataFrame
    contacts: pd.DataFrame
    truth: dict[str, pd.DataFrame]


class JourneyEnvironment:
    """A seeded population that a policy can be run on, day by day."""

    def __init__(self, config: SimulationConfig | None = None, catalog: Catalog | None = None) -> None:
        self.config = config or SimulationConfig()
        self.catalog = catalog or load_catalog()
        self.tables = ResponseTables.build(self.catalog)
        start, _ = self.config.window
        self.start_us = int(start.value // 1000)
        rng = np.random.default_rng(self.config.seed)
        consents = sorted({*CONSENT_FIELDS, *(c.consent for c in self.catalog.channels.values() if c.consent)})
        traits = draw_traits(self.config, self.catalog.channel_names[:-1], self.start_us, rng)
        self.world = World(
            config=self.config,
            rates=Rates.from_config(self.config),
            rng=rng,
            traits=traits,
            state=initial_state(self.config, traits, tuple(consents)),
            events=EventLog(),
            start_us=self.start_us,
            draws=CommonDraws(self.config.seed, self.config.customers),
        )
        self.outbound = Outbound(self.world, self.catalog, self.tables)
        width = max(6, len(str(self.config.customers - 1)))
        self.customer_ids = np.array([f"c{i:0{width}d}" for i in range(self.config.customers)], dtype=object)
        self.decision_offset = rng.integers(0, self.config.decision_every_days, size=self.config.customers)
        self.contacts = ContactLog()
        self._ids: np.ndarray = np.zeros(0, dtype=object)
        self._phase_rows: list[tuple[IntArray, IntArray, IntArray]] = []
        self._action_ok = self._allowed_actions()
        self._arrivals = self._arrival_buckets()
        self._start_known()
        self.day = 0

    # --- setup --------------------------------------------------------------------------------------------

    def _allowed_actions(self) -> BoolArray:
        ok = np.zeros((len(self.tables.channels), len(self.tables.contents)), dtype=bool)
        ok[-1, -1] = True
        for action in self.catalog.actions:
            ok[self.tables.channels.index(action.channel), self.tables.contents.index(action.content)] = True
        return ok

    def _arrival_buckets(self) -> list[IntArray]:
        day = self.world.traits.arrival_day
        order = np.argsort(day, kind="stable")
        bounds = np.searchsorted(day[order], np.arange(self.config.days + 1))
        return [order[bounds[d] : bounds[d + 1]] for d in range(self.config.days)]

    def _start_known(self) -> None:
        """Customers known before the window: identified buyers in service/advocacy, anonymous browsers…"""
        w, t, s = self.world, self.world.traits, self.world.state
        rng = w.rng
        idx = np.flatnonzero(t.arrival_day < 0)
        state = t.initial_state[idx]
        p_identified = np.array([0.1, 0.45, 0.5, 1.0, 1.0, 0.7])[state]
        who = idx[rng.random(len(idx)) < p_identified]
        s.identified[who] = True
        s.signup_us[who] = t.arrival_us[who] + (rng.random(len(who)) * (self.start_us - t.arrival_us[who])).astype(
            np.int64
        )
        grant_consents(w, who, at_signup=True)
        grant_consents(w, idx[~s.identified[idx]], at_signup=False)
        buyer = idx[(state == SERVICE) | (state == ADVOCACY) | ((state == DORMANT) & s.identified[idx])]
        s.n_purchases[buyer] = rng.geometric(0.5, len(buyer))
        s.last_purchase[buyer] = -rng.integers(1, 365, len(buyer))
        if self.config.log_prior_purchases:
            self._log_prior_purchases(buyer)
        s.last_active[idx] = np.where(
            state == DORMANT, -rng.integers(30, 120, len(idx)), -rng.integers(0, 21, len(idx))
        )
        s.prev_live[idx[(state == DORMANT) & ~s.identified[idx]]] = CONSIDERATION
        self._activate(idx, np.full(len(idx), self.start_us, dtype=np.int64))

    def _log_prior_purchases(self, buyer: IntArray) -> None:
        """Write the known buyers' past orders into the log, as a CRM's order history would show them: the last one
        on the day their state says, the earlier ones further back, none before the customer signed up. Without
        them the brand would see a long-standing customer as a prospect who never bought."""
        w, s, t = self.world, self.world.state, self.world.traits
        rng = w.rng
        signed_up = s.signup_us[buyer]
        day = s.last_purchase[buyer].astype(np.float64)
        logged = np.zeros(len(buyer), dtype=np.int64)
        for k in range(int(s.n_purchases[buyer].max(initial=0))):
            if k:
                day = day - rng.exponential(self.config.prior_purchase_gap_days, len(buyer))
            hour = rng.integers(9 * HOUR_US, 20 * HOUR_US, len(buyer))
            ts = self.start_us + (np.floor(day) * DAY_US).astype(np.int64) + hour
            ts = np.where(k == 0, np.maximum(ts, signed_up + HOUR_US), ts)  # a buyer's last order follows sign-up
            who = (s.n_purchases[buyer] > k) & (ts > signed_up)
            idx, ts = buyer[who], ts[who]
            noise = self.config.basket_sigma * rng.standard_normal(len(idx))
            value = np.round(np.exp(t.basket_log_median[idx] + noise), 2).astype(np.float64)
            store = rng.random(len(idx)) < t.store_preference[idx]
            w.events.add(idx[store], ts[store], "store_purchase", STORE, -1, value[store])
            w.events.add(idx[~store], ts[~store], "purchase", w.site_channel(idx[~store]), -1, value[~store])
            logged += who
        s.n_purchases[buyer] = logged  # the state counts what the log shows

    def _activate(self, idx: IntArray, ts: IntArray) -> None:
        s = self.world.state
        s.phase[idx] = self.world.traits.initial_state[idx]
        s.phase_us[idx] = ts
        self._phase_rows.append((idx, ts, s.phase[idx].copy()))

    # --- the daily loop -----------------------------------------------------------------------------------

    def run(self, policy: OutboundPolicy) -> SimulatedData:
        while self.day < self.config.days:
            self.step(policy)
        return self.collect()

    def step(self, policy: OutboundPolicy) -> None:
        """Simulate one day."""
        w, s, day = self.world, self.world.state, self.day
        w.draws.start_day(day)
        day_us = self.start_us + day * DAY_US
        arriving = self._arrivals[day]
        self._activate(arriving, w.traits.arrival_us[arriving])
        grant_consents(w, arriving, at_signup=False)
        s.fatigue *= self.config.fatigue_decay()
        phase_before = s.phase.copy()
        self._decide(policy, day, day_us)
        live = np.flatnonzero((s.phase >= 0) & (s.phase != CHURNED))
        visitors, clock = sessions(w, live, day, day_us)
        self._show_web(visitors, clock, day)
        settled = live[w.traits.arrival_day[live] < day]  # a new visitor's first event is their arrival
        store_visits(w, settled, day, day_us)
        after_sales(w, settled, day, day_us)
        transitions(w, live, day, day_us)
        churned_returns(w, np.flatnonzero(s.phase == CHURNED), day_us)
        changed = np.flatnonzero(s.phase != phase_before)
        self._phase_rows.append((changed, s.phase_us[changed].copy(), s.phase[changed].copy()))
        self.day += 1

    def _decide(self, policy: OutboundPolicy, day: int, day_us: int) -> None:
        w, s = self.world, self.world.state
        due = (day + self.decision_offset) % self.config.decision_every_days == 0
        idx = np.flatnonzero(due & (w.traits.arrival_day < day) & (s.phase >= 0) & (s.phase != CHURNED))
        if len(idx) == 0:
            return
        now_us = day_us + 9 * HOUR_US
        decisions = policy.decide(self._context(idx, day, now_us))
        channel, content = self._validate(idx, decisions)
        ts = now_us + w.rng.integers(0, HOUR_US, size=len(idx))
        truth = self.outbound.truth(idx, channel, content)
        rows = self.contacts.add(
            decisions.policy,
            idx=idx,
            ts=ts,
            channel=channel,
            content=content,
            propensity=np.asarray(decisions.propensity, dtype=np.float64),
            state=s.phase[idx].copy(),
            **{name: getattr(truth, name) for name in _TRUTH_COLUMNS},
        )
        web = self.tables.ch_web[channel]
        direct = (channel != len(self.tables.channels) - 1) & ~web
        engaged, caused = self.outbound.resolve(idx[direct], channel[direct], content[direct], ts[direct], day)
        self.contacts.set_outcome(rows[direct], engaged, caused)
        pending = idx[web]
        s.web_pending[pending] = rows[web]
        s.web_until[pending] = day + self.config.response_window_days - 1
        s.web_content[pending] = content[web]
        s.web_us[pending] = ts[web]

    def _show_web(self, visitors: IntArray, clock: IntArray, day: int) -> None:
        """Web content waiting for a visit is shown at the end of the session."""
        s = self.world.state
        shown = (s.web_pending[visitors] >= 0) & (s.web_until[visitors] >= day) & (s.phase[visitors] != CHURNED)
        idx = visitors[shown]
        ts = np.maximum(clock[shown], s.web_us[idx]) + self.world.gap(len(idx), 30.0)
        web_code = np.full(len(idx), int(np.argmax(self.tables.ch_web)), dtype=np.int64)
        engaged, caused = self.outbound.resolve(idx, web_code, s.web_content[idx], ts, day, shown=True)
        self.contacts.set_outcome(s.web_pending[idx], engaged, caused)
        s.web_pending[idx] = -1

    def _context(self, idx: IntArray, day: int, now_us: int) -> DecisionContext:
        s = self.world.state

        def response(channel: object, content: object) -> ResponseTruth:
            ch = self._codes(channel, self.tables.channels, len(idx), "channel")
            ct = self._codes(content, self.tables.contents, len(idx), "content")
            return self.outbound.truth(idx, ch, ct)

        return DecisionContext(
            day=day,
            now=pd.Timestamp(now_us * 1000, tz="UTC"),
            customer_ids=self.customer_ids[idx],
            consents={name: granted[idx].copy() for name, granted in s.consents.items()},
            identified=s.identified[idx].copy(),
            history=History(
                events=lambda: self.world.events.frame(self.customer_ids, self.tables.contents[:-1], now_us),
                contacts=lambda: self._contacts_frame(now_us),
            ),
            truth=TruthView(phase=np.array(STATE_NAMES, dtype=object)[s.phase[idx]], response=response),
            catalog=self.catalog,
        )

    @staticmethod
    def _codes(names: object, vocabulary: tuple[str, ...], n: int, what: str) -> IntArray:
        lookup = {name: i for i, name in enumerate(vocabulary)}
        values = np.broadcast_to(np.asarray(names, dtype=object), (n,))
        try:
            return np.array([lookup[v] for v in values.tolist()], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"unknown {what} {exc.args[0]!r}; known: {list(vocabulary)}") from None

    def _validate(self, idx: IntArray, decisions: Decisions) -> tuple[IntArray, IntArray]:
        """A policy must return one catalog action per customer, allowed by the consents, with a propensity."""
        n = len(idx)
        if not (len(decisions.channel) == len(decisions.content) == len(decisions.propensity) == n):
            raise ValueError(f"policy {decisions.policy!r} returned decisions of the wrong length (expected {n})")
        channel = self._codes(decisions.channel, self.tables.channels, n, "channel")
        content = self._codes(decisions.content, self.tables.contents, n, "content")
        bad = ~self._action_ok[channel, content]
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"policy {decisions.policy!r}: {decisions.channel[i]}:{decisions.content[i]} is not a catalog action"
            )
        for code, name in enumerate(self.tables.channels[:-1]):
            consent = self.catalog.channels[name].consent
            missing = (channel == code) & ~self.world.state.consents[consent][idx] if consent else None
            if missing is not None and missing.any():
                who = self.customer_ids[idx[int(np.argmax(missing))]]
                raise ValueError(f"policy {decisions.policy!r} contacted {who} on {name} without {consent}")
        propensity = np.asarray(decisions.propensity, dtype=np.float64)
        if not np.all((propensity > 0) & (propensity <= 1)):
            raise ValueError(f"policy {decisions.policy!r}: propensities must be in (0, 1]")
        return channel, content

    # --- output -------------------------------------------------------------------------------------------

    def _contacts_frame(self, until_us: int | None = None) -> pd.DataFrame:
        log = self.contacts
        if log.size == 0:
            return pd.DataFrame(
                {"decision_id": pd.Series(dtype=object), "customer_id": pd.Series(dtype=object),
                 "ts": pd.Series(dtype="datetime64[us, UTC]"), "channel": pd.Series(dtype=object),
                 "content": pd.Series(dtype=object), "propensity": pd.Series(dtype=np.float64),
                 "policy": pd.Series(dtype=object)}
            )  # fmt: skip
        ts = log.column("ts")
        keep = np.flatnonzero(ts < until_us) if until_us is not None else np.arange(log.size)
        rows = keep[np.argsort(ts[keep], kind="stable")]
        return pd.DataFrame(
            {
                "decision_id": self._decision_ids(rows),
                "customer_id": self.customer_ids[log.column("idx")[rows]],
                "ts": to_utc(ts[rows]),
                "channel": np.array(self.tables.channels, dtype=object)[log.column("channel")[rows]],
                "content": np.array(self.tables.contents, dtype=object)[log.column("content")[rows]],
                "propensity": log.column("propensity")[rows].astype(np.float64),
                "policy": np.array(log.policies, dtype=object)[log.column("_policy")[rows]],
            }
        )

    def _decision_ids(self, rows: IntArray) -> np.ndarray:
        """Stable ids `s<seed>-<row>`, built once per row and shared by every frame that needs them."""
        built = len(self._ids)
        if built < self.contacts.size:
            prefix = f"s{self.config.seed}-"
            fresh = np.array([f"{prefix}{r:08d}" for r in range(built, self.contacts.size)], dtype=object)
            self._ids = np.concatenate([self._ids, fresh])
        return self._ids[rows]

    def collect(self) -> SimulatedData:
        events = self.world.events.frame(self.customer_ids, self.tables.contents[:-1])
        contacts = self._contacts_frame()
        return SimulatedData(
            customers=self._customers_frame(),
            events=events,
            contacts=contacts,
            truth={
                "phase_history": self._phase_history(),
                "traits": self.world.traits.frame(self.customer_ids, self.tables.channels[:-1]),
                "contact_outcomes": self._contact_outcomes(),
                "final_state": self._final_state(),
            },
        )

    def _customers_frame(self) -> pd.DataFrame:
        s, t = self.world.state, self.world.traits
        signup = np.where(s.identified, s.signup_us, 0)
        signup_ts = pd.Series(to_utc(signup)).where(s.identified)
        frame = pd.DataFrame({"customer_id": self.customer_ids, "signup_ts": signup_ts})
        for name in sorted(s.consents):
            frame[name] = s.consents[name].copy()
        frame["region"] = t.region
        frame["age_band"] = t.age_band
        return frame

    def _phase_history(self) -> pd.DataFrame:
        idx, ts, phase = (np.concatenate(parts) for parts in zip(*self._phase_rows, strict=True))
        order = np.lexsort((idx, ts))
        return pd.DataFrame(
            {
                "customer_id": self.customer_ids[idx[order]],
                "ts": to_utc(ts[order]),
                "phase": np.array(STATE_NAMES, dtype=object)[phase[order]],
            }
        )

    def _final_state(self) -> pd.DataFrame:
        s = self.world.state
        return pd.DataFrame(
            {
                "customer_id": self.customer_ids,
                "phase": np.array(STATE_NAMES, dtype=object)[s.phase],
                "purchases": s.n_purchases,
                "fatigue": s.fatigue,
                "cart_open": s.cart_open,
            }
        )

    def _contact_outcomes(self) -> pd.DataFrame:
        log = self.contacts
        rows = np.arange(log.size)
        engaged, caused = log.outcome_arrays()
        content = log.column("content").astype(np.int64)
        ts = log.column("ts").astype(np.int64)
        idx = log.column("idx").astype(np.int64)
        frame = pd.DataFrame(
            {
                "decision_id": self._decision_ids(rows),
                "customer_id": self.customer_ids[idx],
                "phase": np.array(STATE_NAMES, dtype=object)[log.column("state").astype(np.int64)],
                "goal": np.array([*GOALS, None], dtype=object)[self.tables.goal[content]],
                "engaged": engaged,
                "goal_caused": caused,
                "goal_reached": self._goal_reached(idx, ts, self.tables.goal[content]),
            }
        )
        for name in _TRUTH_COLUMNS:
            frame[name] = log.column(name)
        frame = frame.rename(
            columns={"incremental_value": "incremental_value_expected", "net_value": "net_value_expected"}
        )
        return frame.iloc[np.argsort(ts, kind="stable")].reset_index(drop=True)

    def _goal_reached(self, idx: IntArray, ts: IntArray, goal: IntArray) -> BoolArray:
        """Whether the content's goal event followed within the response window (caused or not)."""
        ev_idx, ev_ts, ev_type, *_ = self.world.events.arrays()
        reached = np.zeros(len(idx), dtype=bool)
        window = self.config.response_window_days * DAY_US
        for code, name in enumerate(GOALS):
            rows = np.flatnonzero(goal == code)
            if len(rows) == 0:
                continue
            kinds = [EVENT_TYPE_CODE[k] for k in GOAL_EVENTS[name]]
            hit = np.isin(ev_type, kinds)
            events = pd.DataFrame({"idx": ev_idx[hit], "next": ev_ts[hit]})
            events["ts"] = events["next"]
            left = pd.DataFrame({"row": rows, "idx": idx[rows], "ts": ts[rows]}).sort_values("ts", kind="stable")
            merged = pd.merge_asof(
                left, events.sort_values("ts", kind="stable"), on="ts", by="idx",
                direction="forward", allow_exact_matches=False,
            )  # fmt: skip
            ok = merged["next"].notna().to_numpy() & (merged["next"].to_numpy() - merged["ts"].to_numpy() <= window)
            reached[merged["row"].to_numpy()] = ok
        return reached


def simulate(
    config: SimulationConfig = DEFAULT_CONFIG, catalog: Catalog | None = None, policy: OutboundPolicy | None = None
) -> SimulatedData:
    """Simulate a population under `policy` (default: the randomized logging policy, exact propensities)."""
    environment = JourneyEnvironment(config, catalog)
    policy = policy or RandomLoggingPolicy(environment.catalog, config.none_share, seed=config.seed)
    return environment.run(policy)
