"""The organic journey: daily visits and funnel, store purchases, after-sales events and state transitions.

Everything is vectorised over customers; the environment calls these once per simulated day. The acts
(`signup`, `checkout_and_pay`, `buy_in_store`...) are shared with contact responses, so a purchase caused by a
contact looks exactly like an organic one in the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from journey.simulator.config import (
    ADVOCACY,
    CHURNED,
    CONSIDERATION,
    DAY_US,
    DISCOVERY,
    DORMANT,
    HOUR_US,
    MINUTE_US,
    NOT_ARRIVED,
    PURCHASE,
    SERVICE,
    SimulationConfig,
    per_state,
)
from journey.simulator.draws import CommonDraws
from journey.simulator.population import Traits, session_start_us
from journey.simulator.records import EVENT_CHANNEL_CODE, BoolArray, EventLog, FloatArray, IntArray

WEB, APP, STORE = EVENT_CHANNEL_CODE["web"], EVENT_CHANNEL_CODE["app"], EVENT_CHANNEL_CODE["store"]
_ACQUISITION = np.array([EVENT_CHANNEL_CODE[c] for c in ("search", "social_ad", "other", "web")])
_ACQUISITION_P = (0.45, 0.2, 0.15, 0.2)
_SUPPORT = np.array([EVENT_CHANNEL_CODE[c] for c in ("call", "web", "email", "store")])
_SUPPORT_P = (0.35, 0.35, 0.2, 0.1)
_DORMANCY_BY_STATE = per_state((1.5, 1.0, 0.5, 0.6, 0.4, 0.0))


@dataclass(frozen=True)
class Rates:
    """Per-state rate arrays (indexable by state code) derived once from the config."""

    visit: FloatArray
    views: FloatArray
    add_to_cart: FloatArray
    checkout: FloatArray
    store: FloatArray
    signup: FloatArray
    review: FloatArray

    @classmethod
    def from_config(cls, config: SimulationConfig) -> Rates:
        return cls(
            visit=per_state(config.visit_rate),
            views=per_state(config.views_per_visit),
            add_to_cart=per_state(config.add_to_cart_rate),
            checkout=per_state(config.checkout_rate),
            store=per_state(config.store_purchase_rate),
            signup=per_state(config.signup_on_visit),
            review=per_state(config.review_rate),
        )


def visit_probability(rates: Rates, state: IntArray, activity: FloatArray) -> FloatArray:
    return np.minimum(rates.visit[state] * activity, 0.95)


def checkout_probability(
    rates: Rates, state: IntArray, price_sensitivity: FloatArray, store_preference: FloatArray
) -> FloatArray:
    """P(checkout | a cart in the session): price-sensitive and store-minded people hesitate online."""
    return rates.checkout[state] * (1 - 0.3 * price_sensitivity) * (1 - 0.6 * store_preference)


def payment_probability(config: SimulationConfig, price_sensitivity: FloatArray) -> FloatArray:
    return config.purchase_rate * (1 - 0.25 * price_sensitivity)


def store_probability(rates: Rates, state: IntArray, store_preference: FloatArray) -> FloatArray:
    return rates.store[state] * (0.3 + 1.4 * store_preference)


@dataclass
class State:
    """Mutable per-customer journey state (ground truth)."""

    phase: IntArray
    prev_live: IntArray  # last active phase, where dormant/churned customers come back to
    identified: BoolArray
    signup_us: IntArray  # NaT-like minimum int64 while anonymous
    consents: dict[str, BoolArray]
    withdrawn: dict[str, BoolArray]  # unsubscribed once: never granted again (keeps consent history exact)
    fatigue: FloatArray
    last_active: IntArray
    last_view: IntArray
    last_cart: IntArray
    cart_open: BoolArray
    n_purchases: IntArray
    last_purchase: IntArray
    coupon_until: IntArray
    coupon_content: IntArray
    web_pending: IntArray  # contact row of web content waiting for the next visit, -1 if none
    web_until: IntArray
    web_content: IntArray
    web_us: IntArray  # when the pending web decision was made (a click can only come after it)
    phase_us: IntArray  # when the phase last changed (for the phase history)


@dataclass
class World:
    """What the daily functions share: config, randomness, traits, state and the event log."""

    config: SimulationConfig
    rates: Rates
    rng: np.random.Generator
    traits: Traits
    state: State
    events: EventLog
    start_us: int
    draws: CommonDraws  # per-customer draws of the events that decide outcomes (see journey.simulator.draws)

    def gap(self, n: int, mean_s: float = 90.0) -> IntArray:
        """Seconds between two clicks of a session, in µs (≥ 5 s, ≤ 10 min)."""
        seconds = np.clip(self.rng.exponential(mean_s, size=n), 5.0, 600.0)
        return (seconds * 1_000_000).astype(np.int64)

    def site_channel(self, idx: IntArray) -> IntArray:
        """App users use the app for about 60 % of their sessions."""
        app = self.traits.app_user[idx] & (self.rng.random(len(idx)) < 0.6)
        return np.where(app, APP, WEB).astype(np.int64)

    def move(self, idx: IntArray, new_state: int | IntArray, ts: int | IntArray) -> None:
        """Change the latent phase, remembering the last active one for later returns."""
        s = self.state
        old = s.phase[idx]
        live = old < DORMANT
        s.prev_live[idx[live]] = old[live]
        s.phase[idx] = new_state
        s.phase_us[idx] = ts


def initial_state(world_config: SimulationConfig, traits: Traits, consent_names: tuple[str, ...]) -> State:
    n = world_config.customers
    minus_one = np.full(n, -1, dtype=np.int64)
    far_past = np.full(n, -10_000, dtype=np.int64)
    return State(
        phase=np.full(n, NOT_ARRIVED, dtype=np.int64),
        prev_live=np.where(traits.initial_state < DORMANT, traits.initial_state, SERVICE).astype(np.int64),
        identified=np.zeros(n, dtype=bool),
        signup_us=np.full(n, np.iinfo(np.int64).min, dtype=np.int64),
        consents={name: np.zeros(n, dtype=bool) for name in consent_names},
        withdrawn={name: np.zeros(n, dtype=bool) for name in consent_names},
        fatigue=np.zeros(n, dtype=np.float64),
        last_active=far_past.copy(),
        last_view=far_past.copy(),
        last_cart=far_past.copy(),
        cart_open=np.zeros(n, dtype=bool),
        n_purchases=np.zeros(n, dtype=np.int64),
        last_purchase=far_past.copy(),
        coupon_until=minus_one.copy(),
        coupon_content=minus_one.copy(),
        web_pending=minus_one.copy(),
        web_until=minus_one.copy(),
        web_content=minus_one.copy(),
        web_us=np.zeros(n, dtype=np.int64),
        phase_us=np.zeros(n, dtype=np.int64),
    )


# --- acts shared by organic behaviour and contact responses -------------------------------------------------


def grant_consents(world: World, idx: IntArray, at_signup: bool) -> None:
    """Consents given at sign-up (push only for app users); ads consent can exist for anonymous cookies."""
    cfg, rng, s = world.config, world.rng, world.state
    for name, granted in s.consents.items():
        if not at_signup and name != "consent_ads":
            continue
        if name == "consent_ads" and not at_signup:
            p: float | FloatArray = cfg.anonymous_ads_consent
        else:
            p = cfg.consent_at_signup.get(name, cfg.other_consent_at_signup)
        if name == "consent_push":
            p = np.where(world.traits.app_user[idx], p, 0.0)
        granted[idx[(rng.random(len(idx)) < p) & ~s.withdrawn[name][idx]]] = True


def signup(world: World, idx: IntArray, ts: IntArray, channel: int | IntArray) -> None:
    """An anonymous visitor identifies themself: a `signup` event and consents."""
    s = world.state
    new = ~s.identified[idx]
    idx, ts = idx[new], ts[new]
    channel = channel[new] if isinstance(channel, np.ndarray) else channel
    world.events.add(idx, ts, "signup", channel)
    s.identified[idx] = True
    s.signup_us[idx] = ts
    grant_consents(world, idx, at_signup=True)


def basket_value(world: World, idx: IntArray, day: int) -> tuple[FloatArray, IntArray]:
    """Basket amount from the customer's lognormal, net of a live coupon; also the coupon's content code."""
    s = world.state
    noise = world.config.basket_sigma * world.draws.normal("basket", idx)
    amount = np.exp(world.traits.basket_log_median[idx] + noise)
    coupon = s.coupon_until[idx] >= day
    amount = np.where(coupon, amount * (1 - world.config.discount_rate), amount)
    content = np.where(coupon, s.coupon_content[idx], -1)
    s.coupon_until[idx[coupon]] = -1
    return np.round(amount, 2).astype(np.float64), content.astype(np.int64)


def record_purchase(world: World, idx: IntArray, ts: IntArray, day: int) -> None:
    s = world.state
    s.n_purchases[idx] += 1
    s.last_purchase[idx] = day
    s.last_active[idx] = day
    s.cart_open[idx] = False
    to_service = s.phase[idx] != SERVICE
    world.move(idx[to_service], SERVICE, ts[to_service])


def checkout_and_pay(
    world: World, idx: IntArray, clock: IntArray, channel: IntArray, day: int, sure: bool = False
) -> tuple[BoolArray, IntArray]:
    """Checkout (an account is needed) then payment; returns who paid and the advanced clocks.

    `sure`: a purchase already decided (caused by a contact), so no drop-off.
    """
    s, cfg = world.state, world.config
    clock = clock.copy()
    anonymous = ~s.identified[idx]
    go_on = ~anonymous | sure | world.draws.bernoulli("checkout_signup", idx, cfg.checkout_signup_rate)
    creates = anonymous & go_on
    clock[creates] += world.gap(int(creates.sum()))
    signup(world, idx[creates], clock[creates], channel[creates])
    clock[go_on] += world.gap(int(go_on.sum()))
    world.events.add(idx[go_on], clock[go_on], "checkout", channel[go_on])
    ps = world.traits.price_sensitivity[idx]
    paid = go_on & (sure | world.draws.bernoulli("payment", idx, payment_probability(cfg, ps)))
    clock[paid] += world.gap(int(paid.sum()))
    value, content = basket_value(world, idx[paid], day)
    world.events.add(idx[paid], clock[paid], "purchase", channel[paid], content, value)
    s.cart_open[idx[~paid]] = True
    s.last_cart[idx[~paid]] = day
    record_purchase(world, idx[paid], clock[paid], day)
    return paid, clock


def buy_in_store(world: World, idx: IntArray, ts: IntArray, day: int, link_all: bool = False) -> BoolArray:
    """A store purchase; anonymous buyers are linked only if they sign up at the till."""
    s = world.state
    linked = s.identified[idx] | link_all | world.draws.bernoulli("store_signup", idx, world.config.store_signup_rate)
    till = linked & ~s.identified[idx]
    signup(world, idx[till], ts[till] - MINUTE_US, STORE)
    value, content = basket_value(world, idx[linked], day)
    world.events.add(idx[linked], ts[linked], "store_purchase", STORE, content, value)
    record_purchase(world, idx, ts, day)
    return linked


def view_products(world: World, idx: IntArray, clock: IntArray, channel: IntArray, views: IntArray) -> IntArray:
    """`views[i]` product views per customer; returns the advanced clocks."""
    clock = clock.copy()
    for k in range(int(views.max(initial=0))):
        sel = views > k
        clock[sel] += world.gap(int(sel.sum()))
        world.events.add(idx[sel], clock[sel], "product_view", channel[sel])
    return clock


# --- one day of organic behaviour ----------------------------------------------------------------------------


def sessions(world: World, live: IntArray, day: int, day_us: int) -> tuple[IntArray, IntArray]:
    """Today's site sessions (new arrivals always have one); returns visitors and their session-end clocks."""
    s, t, rng = world.state, world.traits, world.rng
    arriving = live[t.arrival_day[live] == day]
    others = live[t.arrival_day[live] != day]
    visit = world.draws.bernoulli("visit", others, visit_probability(world.rates, s.phase[others], t.activity[others]))
    returning = others[visit]
    idx = np.concatenate([arriving, returning])
    clock = np.concatenate([t.arrival_us[arriving], session_start_us(rng, day_us, len(returning))])
    channel = world.site_channel(idx)
    entry = channel.copy()
    entry[: len(arriving)] = rng.choice(_ACQUISITION, size=len(arriving), p=_ACQUISITION_P)
    world.events.add(idx, clock, "page_view", entry)
    s.last_active[idx] = day
    clock = _browse(world, idx, clock, channel, day)
    _signup_on_visit(world, idx, clock, channel)
    return idx, clock


def _browse(world: World, idx: IntArray, clock: IntArray, channel: IntArray, day: int) -> IntArray:
    """Product views → add to cart → checkout → payment, with a drop-off at every step."""
    s, t, r = world.state, world.traits, world.rates
    phase = s.phase[idx]
    views = world.draws.poisson("views", idx, r.views[phase])
    clock = view_products(world, idx, clock, channel, views)
    s.last_view[idx[views > 0]] = day
    added = (views > 0) & world.draws.bernoulli("add_to_cart", idx, r.add_to_cart[phase])
    clock[added] += world.gap(int(added.sum()))
    world.events.add(idx[added], clock[added], "add_to_cart", channel[added])
    s.cart_open[idx[added]] = True
    s.last_cart[idx[added]] = day
    resumed = ~added & s.cart_open[idx] & world.draws.bernoulli("cart_return", idx, world.config.cart_return_rate)
    p_checkout = checkout_probability(r, phase, t.price_sensitivity[idx], t.store_preference[idx])
    checkout = (added | resumed) & world.draws.bernoulli("checkout", idx, p_checkout)
    _, clock[checkout] = checkout_and_pay(world, idx[checkout], clock[checkout], channel[checkout], day)
    return clock


def _signup_on_visit(world: World, idx: IntArray, clock: IntArray, channel: IntArray) -> None:
    s = world.state
    p = world.rates.signup[s.phase[idx]]
    new = ~s.identified[idx] & world.draws.bernoulli("signup", idx, p)
    signup(world, idx[new], clock[new] + world.gap(int(new.sum())), channel[new])


def store_visits(world: World, live: IntArray, day: int, day_us: int) -> None:
    """Store purchases, mostly by people who researched online first (the purchase phase browses a lot)."""
    t, rng = world.traits, world.rng
    p = store_probability(world.rates, world.state.phase[live], t.store_preference[live])
    buyers = live[world.draws.bernoulli("store", live, p)]
    ts = day_us + 10 * HOUR_US + rng.integers(0, 9 * HOUR_US, size=len(buyers))
    buy_in_store(world, buyers, ts, day)


def after_sales(world: World, live: IntArray, day: int, day_us: int) -> None:
    """Support tickets, surveys, reviews and referrals from identified buyers in service/advocacy."""
    s, t, rng, cfg = world.state, world.traits, world.rng, world.config
    idx = live[s.identified[live] & ((s.phase[live] == SERVICE) | (s.phase[live] == ADVOCACY))]
    if len(idx) == 0:
        return
    phase = s.phase[idx]

    def at(sel: BoolArray) -> IntArray:
        return day_us + 8 * HOUR_US + rng.integers(0, 13 * HOUR_US, size=int(sel.sum()))

    recent = (day - s.last_purchase[idx]) < 30
    p_ticket = cfg.support_rate * (1.5 - t.satisfaction[idx]) + 0.015 * recent
    ticket = world.draws.bernoulli("ticket", idx, p_ticket)
    world.events.add(idx[ticket], at(ticket), "support_ticket", rng.choice(_SUPPORT, int(ticket.sum()), p=_SUPPORT_P))
    survey = world.draws.bernoulli("survey", idx, cfg.survey_rate)
    world.events.add(idx[survey], at(survey), "survey", WEB, -1, survey_score(world, idx[survey]))
    review = (s.n_purchases[idx] > 0) & world.draws.bernoulli("review", idx, world.rates.review[phase])
    world.events.add(idx[review], at(review), "review", WEB, -1, review_stars(world, idx[review]))
    referral = (phase == ADVOCACY) & world.draws.bernoulli("referral", idx, cfg.referral_rate)
    world.events.add(idx[referral], at(referral), "referral", WEB)
    s.last_active[idx[ticket | survey | review | referral]] = day


def survey_score(world: World, idx: IntArray) -> FloatArray:
    """0–10 score: advocates answer 9–10, others follow their satisfaction."""
    advocate = world.state.phase[idx] == ADVOCACY
    mean = np.where(advocate, 9.3, 3.5 + 5.5 * world.traits.satisfaction[idx])
    noise = world.rng.normal(0, np.where(advocate, 0.6, 1.4))
    return np.clip(np.round(mean + noise), 0, 10).astype(np.float64)


def review_stars(world: World, idx: IntArray) -> FloatArray:
    advocate = world.state.phase[idx] == ADVOCACY
    mean = np.where(advocate, 4.8, 1.5 + 3.5 * world.traits.satisfaction[idx])
    return np.clip(np.round(mean + world.rng.normal(0, 0.6, len(idx))), 1, 5).astype(np.float64)


# --- state transitions --------------------------------------------------------------------------------------


def transitions(world: World, live: IntArray, day: int, day_us: int) -> None:
    """End-of-day moves along the journey, and drift to dormant/churned for the inactive and over-contacted."""
    s, cfg = world.state, world.config
    ts = day_us + DAY_US - 1_000_000
    phase = s.phase[live]
    inactive = np.minimum(day - s.last_active[live], 60)
    fatigue = s.fatigue[live]
    drift = (cfg.dormancy_base + cfg.dormancy_per_inactive_day * inactive) * _DORMANCY_BY_STATE[phase]
    drift = drift + cfg.dormancy_fatigue * fatigue * (phase < DORMANT)
    viewed = s.last_view[live] == day
    carted = s.last_cart[live] == day
    visited = s.last_active[live] == day
    moves: list[tuple[int, int | IntArray, FloatArray]] = [
        (DISCOVERY, CONSIDERATION, cfg.discovery_to_consideration + 0.03 * viewed),
        (CONSIDERATION, PURCHASE, cfg.consideration_to_purchase + 0.04 * carted),
        (CONSIDERATION, DISCOVERY, np.full(len(live), 0.003)),
        (PURCHASE, CONSIDERATION, np.full(len(live), cfg.purchase_back_off)),
        (SERVICE, ADVOCACY, cfg.service_to_advocacy * (0.5 + world.traits.satisfaction[live])),
        (SERVICE, PURCHASE, np.full(len(live), cfg.repeat_need)),
        (ADVOCACY, SERVICE, np.full(len(live), 0.004)),
        (ADVOCACY, PURCHASE, np.full(len(live), 1.25 * cfg.repeat_need)),
        (DORMANT, s.prev_live[live], cfg.dormant_return + 0.35 * visited),
        (DORMANT, CHURNED, cfg.dormant_to_churned + 0.002 * fatigue),
    ]
    u = world.draws.uniform("transition", live)  # one draw per customer, split into the hazards of the moves
    moved = (phase < DORMANT) & (u < drift)
    world.move(live[moved], DORMANT, ts)
    cumulative = np.where(phase < DORMANT, drift, 0.0)
    for phase_from, to, hazard in moves:
        sel = ~moved & (phase == phase_from) & (u >= cumulative) & (u < cumulative + hazard)
        target = to[sel] if isinstance(to, np.ndarray) else to
        world.move(live[sel], target, ts)
        moved |= sel
        cumulative = np.where(phase == phase_from, cumulative + hazard, cumulative)


def churned_returns(world: World, churned: IntArray, day_us: int) -> None:
    """Churned customers almost never come back."""
    back = churned[world.draws.bernoulli("churned_return", churned, world.config.churned_return)]
    world.move(back, world.state.prev_live[back], day_us + DAY_US - 1_000_000)
