"""The ground-truth response model: how a customer in a given latent state reacts to (channel, content).

A contact is first *engaged* with (opened, clicked, answered...), with log-odds
`channel base + content fit to the state + customer affinity + 0.5·log(activity) − fatigue`; web content is only
seen if the customer visits within the response window. An engaged contact then *causes* its content's goal with
probability `lift` (content × state × channel, zero when a precondition such as an abandoned cart is missing).
The organic process keeps running, so P(goal | treated) = 1 − (1 − p0)(1 − P(engage)·lift) and the uplift is
P(engage)·lift·(1 − p0): sure things (high organic p0) click a lot but gain little. Coupons are also redeemed by
engaged customers who would have bought anyway, which costs `subsidy` of margin each time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from journey.catalog import Catalog, load_catalog
from journey.simulator.config import (
    ADVOCACY,
    CHURNED,
    CONSIDERATION,
    DISCOVERY,
    DORMANT,
    LIVE_STATES,
    PURCHASE,
    SERVICE,
    STATE_NAMES,
    SimulationConfig,
)
from journey.simulator.dynamics import (
    Rates,
    checkout_probability,
    payment_probability,
    store_probability,
    visit_probability,
)
from journey.simulator.records import BoolArray, FloatArray, IntArray
from journey.vocabulary import Objective

GOALS: tuple[str, ...] = ("purchase", "store_purchase", "product_view", "signup", "survey", "review", "referral")
GOAL_CODE: dict[str, int] = {g: i for i, g in enumerate(GOALS)}
# Event types that count as reaching each goal (for the `goal_reached` ground truth).
GOAL_EVENTS: dict[str, tuple[str, ...]] = {
    "purchase": ("purchase", "store_purchase"),
    "store_purchase": ("store_purchase",),
    "product_view": ("product_view",),
    "signup": ("signup",),
    "survey": ("survey",),
    "review": ("review",),
    "referral": ("referral",),
}
NEEDS: tuple[str, ...] = ("", "cart", "purchased", "anonymous")


@dataclass(frozen=True)
class ContentTruth:
    """What a content really does; tuples run over the six live states (discovery … dormant)."""

    goal: str
    lift: tuple[float, ...]  # P(goal caused | engaged) per state
    fit: tuple[float, ...]  # engagement log-odds shift per state
    spam: tuple[str, ...] = ()  # states in which it annoys (raises unsubscribes)
    needs: str = ""  # precondition: "cart" (abandoned), "purchased", "anonymous"
    spam_if_unmet: bool = True
    subsidy: float = 0.0  # margin lost each time an engaged customer redeems the coupon
    store: bool = False  # works through store visits: scaled by store preference
    advance: tuple[int, int, float] | None = None  # (from state, to state, P) when the goal is caused
    reactivation: float = 0.15  # P(a dormant customer comes back | engaged)


_ALL = ("discovery", "consideration", "purchase", "service", "advocacy", "dormant")
CONTENT_TRUTHS: dict[str, ContentTruth] = {
    "product_recommendation": ContentTruth(
        "purchase", (0.005, 0.05, 0.12, 0.03, 0.04, 0.01), (-0.3, 0.3, 0.5, 0.1, 0.1, -0.6), ("discovery", "dormant")
    ),
    "cart_reminder": ContentTruth(
        "purchase", (0.05, 0.25, 0.35, 0.10, 0.10, 0.05), (0.0, 0.5, 0.8, 0.0, 0.0, -0.5), needs="cart"
    ),
    "demo_invitation": ContentTruth(
        "store_purchase",
        (0.003, 0.06, 0.12, 0.01, 0.01, 0.005),
        (-0.5, 0.3, 0.5, -0.3, -0.3, -0.8),
        ("service", "advocacy", "dormant"),
        store=True,
    ),
    "time_limited_discount": ContentTruth(
        "purchase", (0.0005, 0.06, 0.5, 0.04, 0.04, 0.03), (0.4, 0.5, 0.8, 0.4, 0.4, 0.0), subsidy=4.0
    ),
    "educational_guide": ContentTruth(
        "product_view",
        (0.25, 0.12, 0.03, 0.02, 0.02, 0.05),
        (0.4, 0.3, -0.2, -0.4, -0.4, -0.5),
        ("service", "advocacy"),
        advance=(DISCOVERY, CONSIDERATION, 0.5),
    ),
    "comparison_reviews": ContentTruth(
        "product_view",
        (0.08, 0.30, 0.12, 0.02, 0.02, 0.02),
        (0.1, 0.5, 0.3, -0.4, -0.4, -0.6),
        ("service", "advocacy"),
        advance=(CONSIDERATION, PURCHASE, 0.35),
    ),
    "onboarding_tips": ContentTruth(
        "product_view",
        (0.01, 0.01, 0.01, 0.20, 0.10, 0.04),
        (-0.6, -0.5, -0.5, 0.5, 0.2, -0.4),
        ("discovery", "consideration", "purchase"),
        needs="purchased",
        advance=(SERVICE, ADVOCACY, 0.08),
    ),
    "satisfaction_survey": ContentTruth(
        "survey",
        (0.0, 0.01, 0.01, 0.25, 0.35, 0.03),
        (-0.8, -0.6, -0.6, 0.3, 0.6, -0.5),
        ("discovery", "consideration", "purchase"),
        needs="purchased",
    ),
    "review_request": ContentTruth(
        "review",
        (0.0, 0.005, 0.01, 0.20, 0.30, 0.01),
        (-0.8, -0.6, -0.5, 0.4, 0.7, -0.6),
        ("discovery", "consideration", "purchase"),
        needs="purchased",
        advance=(SERVICE, ADVOCACY, 0.35),
    ),
    "referral_invitation": ContentTruth(
        "referral",
        (0.0, 0.0, 0.0, 0.02, 0.25, 0.0),
        (-0.8, -0.8, -0.8, -0.2, 0.8, -0.8),
        ("discovery", "consideration", "purchase", "service", "dormant"),
    ),
    "loyalty_offer": ContentTruth(
        "purchase",
        (0.002, 0.01, 0.05, 0.06, 0.08, 0.03),
        (-0.5, -0.2, 0.2, 0.4, 0.5, 0.0),
        ("discovery",),
        needs="purchased",
        subsidy=3.0,
    ),
    "win_back_offer": ContentTruth(
        "purchase",
        (0.002, 0.01, 0.03, 0.02, 0.02, 0.12),
        (-0.5, -0.3, 0.0, 0.0, 0.0, 0.6),
        ("consideration", "purchase"),
        subsidy=4.0,
        reactivation=0.6,
    ),
    "signup_invitation": ContentTruth(
        "signup",
        (0.12, 0.18, 0.20, 0.05, 0.05, 0.02),
        (0.2, 0.3, 0.3, 0.0, 0.0, -0.5),
        needs="anonymous",
        spam_if_unmet=False,
    ),
}
_OBJECTIVE_GOAL = {
    Objective.CONVERSION: "purchase",
    Objective.CONNECTION: "signup",
    Objective.CONSIDERATION: "product_view",
    Objective.KNOWLEDGE: "survey",
}


@dataclass(frozen=True)
class ChannelTruth:
    base: float  # engagement log-odds of a neutral content
    lift: float  # multiplies the content's lift (a call persuades more than an ad)
    unsubscribe: float  # relative unsubscribe pressure (0: nothing to unsubscribe from)
    fatigue: float  # fatigue added by one contact


CHANNEL_TRUTHS: dict[str, ChannelTruth] = {
    "email": ChannelTruth(-0.9, 1.0, 1.0, 1.0),
    "sms": ChannelTruth(-1.8, 1.1, 1.5, 1.3),
    "push": ChannelTruth(-1.9, 0.9, 1.2, 0.8),
    "web": ChannelTruth(-1.2, 1.0, 0.0, 0.3),
    "social_ad": ChannelTruth(-2.4, 0.8, 0.5, 0.4),
    "mail": ChannelTruth(-1.6, 1.2, 0.5, 0.6),
    "call": ChannelTruth(-0.8, 1.8, 2.0, 1.5),
}


def default_content_truth(catalog: Catalog, name: str) -> ContentTruth:
    """A content the truth tables do not know: weak, flat effect; annoying outside its declared phases."""
    spec = catalog.contents[name]
    declared = {p.value for p in spec.phases}
    goal = _OBJECTIVE_GOAL[spec.objective]
    return ContentTruth(
        goal,
        (0.02,) * LIVE_STATES,
        (0.0,) * LIVE_STATES,
        tuple(s for s in _ALL[:DORMANT] if s not in declared),
        needs="anonymous" if goal == "signup" else "",
        spam_if_unmet=False,
    )


@dataclass(frozen=True)
class ResponseTables:
    """The truth tables laid out as arrays over catalog codes; the last content/channel code is 'none'."""

    contents: tuple[str, ...]
    channels: tuple[str, ...]
    value: FloatArray
    goal: IntArray
    lift: FloatArray  # (contents+1, 7 states)
    fit: FloatArray
    spam: BoolArray
    needs: IntArray
    spam_if_unmet: BoolArray
    subsidy: FloatArray
    store: BoolArray
    advance: IntArray  # (contents+1, 2): from, to (-1 none)
    advance_p: FloatArray
    reactivation: FloatArray
    ch_base: FloatArray
    ch_lift: FloatArray
    ch_unsubscribe: FloatArray
    ch_fatigue: FloatArray
    ch_cost: FloatArray
    ch_web: BoolArray

    @classmethod
    def build(cls, catalog: Catalog) -> ResponseTables:
        contents = catalog.content_names  # ends with "none"
        channels = catalog.channel_names  # ends with "none"
        truths = [CONTENT_TRUTHS.get(n) or default_content_truth(catalog, n) for n in contents[:-1]]
        k = len(truths)

        def table(attr: str) -> FloatArray:
            rows = np.zeros((k + 1, CHURNED + 1))
            for i, t in enumerate(truths):
                rows[i, :LIVE_STATES] = getattr(t, attr)
            return rows

        spam = np.zeros((k + 1, CHURNED + 1), dtype=bool)
        advance = np.full((k + 1, 2), -1, dtype=np.int64)
        advance_p = np.zeros(k + 1)
        for i, t in enumerate(truths):
            spam[i, [STATE_NAMES.index(s) for s in t.spam]] = True
            if t.advance is not None:
                advance[i] = t.advance[:2]
                advance_p[i] = t.advance[2]
        ch_truth = [CHANNEL_TRUTHS.get(c) for c in channels[:-1]]
        consent = [catalog.channels[c].consent for c in channels[:-1]]
        return cls(
            contents=contents,
            channels=channels,
            value=np.array([*(catalog.contents[n].value for n in contents[:-1]), 0.0]),
            goal=np.array([*(GOAL_CODE[t.goal] for t in truths), -1], dtype=np.int64),
            lift=table("lift"),
            fit=table("fit"),
            spam=spam,
            needs=np.array([*(NEEDS.index(t.needs) for t in truths), 0], dtype=np.int64),
            spam_if_unmet=np.array([*(t.spam_if_unmet for t in truths), False]),
            subsidy=np.array([*(t.subsidy for t in truths), 0.0]),
            store=np.array([*(t.store for t in truths), False]),
            advance=advance,
            advance_p=advance_p,
            reactivation=np.array([*(t.reactivation for t in truths), 0.0]),
            ch_base=np.array([*(t.base if t else -2.0 for t in ch_truth), 0.0]),
            ch_lift=np.array([*(t.lift if t else 0.8 for t in ch_truth), 0.0]),
            ch_unsubscribe=np.array(
                [
                    *((t.unsubscribe if t else 1.0) * (c is not None) for t, c in zip(ch_truth, consent, strict=True)),
                    0.0,
                ]
            ),
            ch_fatigue=np.array([*(t.fatigue if t else 1.0 for t in ch_truth), 0.0]),
            ch_cost=np.array([*(catalog.channels[c].cost for c in channels[:-1]), 0.0]),
            ch_web=np.array([*(c == "web" for c in channels[:-1]), False]),
        )


@dataclass(frozen=True)
class ResponseTruth:
    """Expected reaction to one contact per row (values in the catalog's value unit)."""

    p_engage: FloatArray
    lift: FloatArray  # P(goal caused | engaged)
    p_goal_given_engage: FloatArray
    p_goal_control: FloatArray  # organic P(goal within the window) without the contact
    uplift: FloatArray  # P(goal | contact) − P(goal | none)
    incremental_value: FloatArray  # value · uplift − coupon margin given to sure things
    cost: FloatArray
    net_value: FloatArray  # incremental_value − channel cost
    p_unsubscribe: FloatArray
    spam: BoolArray


@dataclass(frozen=True)
class Customers:
    """The per-row customer facts the response depends on (arrays of one length)."""

    state: IntArray
    activity: FloatArray
    price_sensitivity: FloatArray
    store_preference: FloatArray
    affinity: FloatArray  # affinity for the row's channel
    fatigue: FloatArray
    cart_open: BoolArray
    identified: BoolArray
    purchased: BoolArray


def organic_goal_probability(
    rates: Rates, config: SimulationConfig, goal: IntArray, c: Customers, window: int
) -> FloatArray:
    """P(the goal happens organically within `window` days), from today's daily hazards (an approximation:
    it ignores state changes inside the window)."""
    state = c.state
    visit = visit_probability(rates, state, c.activity)
    views = visit * (1 - np.exp(-rates.views[state]))
    buy = checkout_probability(rates, state, c.price_sensitivity, c.store_preference) * payment_probability(
        config, c.price_sensitivity
    )
    account = np.where(c.identified, 1.0, config.checkout_signup_rate)
    online = (views * rates.add_to_cart[state] + visit * c.cart_open * config.cart_return_rate) * buy * account
    store = store_probability(rates, state, c.store_preference)
    after_sales = c.identified & ((state == SERVICE) | (state == ADVOCACY))
    hazards = np.stack(
        [
            1 - (1 - online) * (1 - store),
            store,
            views,
            ~c.identified * visit * rates.signup[state],
            after_sales * config.survey_rate,
            after_sales * c.purchased * rates.review[state],
            c.identified * (state == ADVOCACY) * config.referral_rate,
        ]
    )
    daily = hazards[np.maximum(goal, 0), np.arange(len(goal))] * (goal >= 0)
    return np.asarray(1 - (1 - np.clip(daily, 0, 1)) ** window, dtype=np.float64)


def respond(
    tables: ResponseTables,
    rates: Rates,
    config: SimulationConfig,
    c: Customers,
    channel: IntArray,
    content: IntArray,
    visit_window: bool = True,
) -> ResponseTruth:
    """The truth for customer rows `c` and catalog codes; `visit_window=False` when web content is being shown."""
    state = c.state
    logit = (
        tables.ch_base[channel]
        + tables.fit[content, state]
        + c.affinity
        + 0.5 * np.log(c.activity)
        + 0.5 * c.price_sensitivity * (tables.subsidy[content] > 0)
        - config.fatigue_engagement * c.fatigue
    )
    p_engage = 1 / (1 + np.exp(-logit))
    if visit_window:
        seen = 1 - (1 - visit_probability(rates, state, c.activity)) ** config.response_window_days
        p_engage = np.where(tables.ch_web[channel], p_engage * seen, p_engage)
    needs = tables.needs[content]
    unmet = ((needs == 1) & ~c.cart_open) | ((needs == 2) & ~c.purchased) | ((needs == 3) & c.identified)
    lift = tables.lift[content, state] * tables.ch_lift[channel] * ~unmet
    lift = lift * np.where(tables.store[content], 0.3 + 1.4 * c.store_preference, 1.0)
    lift = lift * np.where(tables.subsidy[content] > 0, 0.6 + 0.8 * c.price_sensitivity, 1.0)
    lift = np.clip(lift, 0.0, 0.95)
    none = (content == len(tables.contents) - 1) | (channel == len(tables.channels) - 1) | (state == CHURNED)
    p_engage = np.where(none, 0.0, p_engage)
    p0 = organic_goal_probability(rates, config, tables.goal[content], c, config.response_window_days)
    uplift = p_engage * lift * (1 - p0)
    incremental = tables.value[content] * uplift - tables.subsidy[content] * p_engage * p0
    cost = np.where(none, 0.0, tables.ch_cost[channel])
    spam = (tables.spam[content, state] | (unmet & tables.spam_if_unmet[content])) & ~none
    p_unsubscribe = tables.ch_unsubscribe[channel] * (
        config.unsubscribe_base * (1 + config.spam_unsubscribe_factor * spam) + config.fatigue_unsubscribe * c.fatigue
    )
    return ResponseTruth(
        p_engage=p_engage,
        lift=lift,
        p_goal_given_engage=1 - (1 - p0) * (1 - lift),
        p_goal_control=p0,
        uplift=uplift,
        incremental_value=incremental,
        cost=cost,
        net_value=incremental - cost,
        p_unsubscribe=np.where(none, 0.0, np.clip(p_unsubscribe, 0, 1)),
        spam=spam,
    )


@lru_cache(maxsize=1)
def _default_tables() -> ResponseTables:
    return ResponseTables.build(load_catalog())


def _codes(names: npt.ArrayLike, vocabulary: tuple[str, ...], what: str) -> IntArray:
    values = np.atleast_1d(np.asarray(names, dtype=object))
    lookup = {name: i for i, name in enumerate(vocabulary)}
    unknown = sorted({str(v) for v in values if v not in lookup})
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {list(vocabulary)}")
    return np.array([lookup[v] for v in values], dtype=np.int64)


def true_response(
    phase: npt.ArrayLike,
    channel: npt.ArrayLike,
    content: npt.ArrayLike,
    *,
    fatigue: npt.ArrayLike = 0.0,
    activity: npt.ArrayLike = 1.0,
    price_sensitivity: npt.ArrayLike = 0.45,
    store_preference: npt.ArrayLike = 0.4,
    affinity: npt.ArrayLike = 0.0,
    cart_open: npt.ArrayLike = False,
    identified: npt.ArrayLike = True,
    has_purchased: npt.ArrayLike | None = None,
    catalog: Catalog | None = None,
    config: SimulationConfig | None = None,
) -> ResponseTruth:
    """Ground-truth reaction to (channel, content) for customers in latent `phase` (state names, incl. dormant).

    Arguments broadcast against each other; trait defaults describe a typical customer. `has_purchased`
    defaults to "the phase is service or advocacy". Used by the simulation itself and by oracle policies.
    """
    tables = ResponseTables.build(catalog) if catalog is not None else _default_tables()
    config = config or SimulationConfig()
    state = _codes(phase, STATE_NAMES, "phase")
    ch = _codes(channel, tables.channels, "channel")
    ct = _codes(content, tables.contents, "content")
    purchased = (state == SERVICE) | (state == ADVOCACY) if has_purchased is None else has_purchased
    arrays = np.broadcast_arrays(
        state, ch, ct, np.asarray(activity, float), np.asarray(price_sensitivity, float),
        np.asarray(store_preference, float), np.asarray(affinity, float), np.asarray(fatigue, float),
        np.asarray(cart_open, bool), np.asarray(identified, bool), np.asarray(purchased, bool),
    )  # fmt: skip
    customers = Customers(*(np.array(a) for a in (arrays[0], *arrays[3:])))
    return respond(tables, Rates.from_config(config), config, customers, arrays[1].copy(), arrays[2].copy())
