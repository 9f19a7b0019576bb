"""What happens after a contact: engagement, unsubscribes, fatigue, coupons, and the goal it may cause.

Goals are carried out with the same acts as organic behaviour (a caused purchase goes through product view,
cart, checkout and payment), so the data does not reveal which conversions were caused.
"""

from __future__ import annotations

import numpy as np

from journey.catalog import Catalog
from journey.simulator.config import DORMANT, HOUR_US, MINUTE_US
from journey.simulator.dynamics import (
    World,
    buy_in_store,
    checkout_and_pay,
    review_stars,
    signup,
    survey_score,
    view_products,
)
from journey.simulator.records import EVENT_CHANNEL_CODE, BoolArray, IntArray
from journey.simulator.response import GOAL_CODE, Customers, ResponseTables, ResponseTruth, respond
from journey.vocabulary import EVENT_CHANNELS, RESPONSE_EVENTS


class Outbound:
    """Resolves contacts for one catalog; holds the catalog-code → event lookups."""

    def __init__(self, world: World, catalog: Catalog, tables: ResponseTables) -> None:
        self.world = world
        self.tables = tables
        names = catalog.channel_names[:-1]
        self.consent: list[str | None] = [catalog.channels[c].consent for c in names]
        self.event_channel = np.array(
            [EVENT_CHANNEL_CODE[c if c in EVENT_CHANNELS else "other"] for c in names] + [EVENT_CHANNEL_CODE["other"]]
        )
        self.response_events: list[list[str]] = [
            ["email_open", "email_click"] if c == "email" else sorted(RESPONSE_EVENTS.get(c, {"web_click"}))
            for c in names
        ]
        self.n_channels = len(names)

    def customers(self, idx: IntArray, channel: IntArray) -> Customers:
        """The response inputs for customer rows `idx` contacted on catalog channel codes `channel`."""
        s, t = self.world.state, self.world.traits
        real = channel < self.n_channels
        affinity = np.where(real, t.affinity[idx, np.minimum(channel, self.n_channels - 1)], 0.0)
        return Customers(
            state=s.phase[idx],
            activity=t.activity[idx],
            price_sensitivity=t.price_sensitivity[idx],
            store_preference=t.store_preference[idx],
            affinity=affinity,
            fatigue=s.fatigue[idx],
            cart_open=s.cart_open[idx],
            identified=s.identified[idx],
            purchased=s.n_purchases[idx] > 0,
        )

    def truth(self, idx: IntArray, channel: IntArray, content: IntArray, visit_window: bool = True) -> ResponseTruth:
        w = self.world
        return respond(self.tables, w.rates, w.config, self.customers(idx, channel), channel, content, visit_window)

    def resolve(
        self, idx: IntArray, channel: IntArray, content: IntArray, ts: IntArray, day: int, shown: bool = False
    ) -> tuple[BoolArray, BoolArray]:
        """Play out contacts that reach the customer now (`shown`: web content seen during a visit)."""
        w, tb = self.world, self.tables
        s, rng = w.state, w.rng
        truth = self.truth(idx, channel, content, visit_window=False)
        n = len(idx)
        engaged = w.draws.bernoulli("engage", idx, truth.p_engage)
        unsubscribes = w.draws.bernoulli("unsubscribe", idx, truth.p_unsubscribe)
        caused_draw = w.draws.bernoulli("caused", idx, truth.lift)
        s.fatigue[idx] += tb.ch_fatigue[channel]
        delay = w.gap(n, 40.0) if shown else (np.clip(rng.exponential(2.0, n), 0.02, 8.0) * HOUR_US).astype(np.int64)
        response_ts = ts + delay
        self._respond_events(idx[engaged], channel[engaged], content[engaged], response_ts[engaged])
        self._unsubscribe(idx[unsubscribes], channel[unsubscribes], response_ts[unsubscribes] + MINUTE_US)
        s.last_active[idx[engaged]] = day
        self._coupons(idx[engaged], content[engaged], day)
        self._reactivate(idx[engaged], content[engaged], response_ts[engaged])
        caused = engaged & caused_draw
        goal_ts = response_ts + w.gap(n, 120.0)
        self._goals(idx[caused], channel[caused], content[caused], goal_ts[caused], day)
        self._advance(idx[caused], content[caused], goal_ts[caused])
        return engaged, caused

    def _respond_events(self, idx: IntArray, channel: IntArray, content: IntArray, ts: IntArray) -> None:
        w = self.world
        for code in np.unique(channel).tolist():
            sel = channel == code
            kinds = self.response_events[code]
            w.events.add(idx[sel], ts[sel], kinds[0], self.event_channel[code], content[sel])
            if len(kinds) > 1:  # e-mail: half of the opens become clicks
                click = sel & (w.rng.random(len(idx)) < 0.5)
                w.events.add(
                    idx[click],
                    ts[click] + w.gap(int(click.sum()), 30.0),
                    kinds[1],
                    self.event_channel[code],
                    content[click],
                )

    def _unsubscribe(self, idx: IntArray, channel: IntArray, ts: IntArray) -> None:
        w = self.world
        for code in np.unique(channel).tolist():
            consent = self.consent[code]
            if consent is None:
                continue
            sel = channel == code
            w.events.add(idx[sel], ts[sel], "unsubscribe", self.event_channel[code])
            w.state.consents[consent][idx[sel]] = False
            w.state.withdrawn[consent][idx[sel]] = True

    def _coupons(self, idx: IntArray, content: IntArray, day: int) -> None:
        coupon = self.tables.subsidy[content] > 0
        s = self.world.state
        s.coupon_until[idx[coupon]] = day + self.world.config.response_window_days - 1
        s.coupon_content[idx[coupon]] = content[coupon]

    def _reactivate(self, idx: IntArray, content: IntArray, ts: IntArray) -> None:
        w = self.world
        back = (w.state.phase[idx] == DORMANT) & w.draws.bernoulli("reactivate", idx, self.tables.reactivation[content])
        w.move(idx[back], w.state.prev_live[idx[back]], ts[back])

    def _advance(self, idx: IntArray, content: IntArray, ts: IntArray) -> None:
        w = self.world
        source, target = self.tables.advance[content, 0], self.tables.advance[content, 1]
        p = self.tables.advance_p[content]
        go = (source >= 0) & (w.state.phase[idx] == source) & w.draws.bernoulli("advance", idx, p)
        w.move(idx[go], target[go], ts[go])

    def _goals(self, idx: IntArray, channel: IntArray, content: IntArray, ts: IntArray, day: int) -> None:
        """Carry out the caused goals, one act per goal kind."""
        w = self.world
        goal = self.tables.goal[content]
        site = w.site_channel(idx)
        for code in np.unique(goal).tolist():
            sel = goal == code
            i, t, ch = idx[sel], ts[sel], site[sel]
            if code == GOAL_CODE["purchase"]:
                self._purchase(i, t, ch, day)
            elif code == GOAL_CODE["store_purchase"]:
                buy_in_store(w, i, t + HOUR_US, day, link_all=True)
            elif code == GOAL_CODE["product_view"]:
                view_products(w, i, t, ch, 1 + w.rng.poisson(1.0, len(i)))
                w.state.last_view[i] = day
            elif code == GOAL_CODE["signup"]:
                signup(w, i, t, ch)
            elif code == GOAL_CODE["survey"]:
                w.events.add(i, t, "survey", self.event_channel[channel[sel]], -1, survey_score(w, i))
            elif code == GOAL_CODE["review"]:
                w.events.add(i, t, "review", ch, -1, review_stars(w, i))
            elif code == GOAL_CODE["referral"]:
                w.events.add(i, t, "referral", ch)

    def _purchase(self, idx: IntArray, ts: IntArray, channel: IntArray, day: int) -> None:
        """Store-minded customers go to the store; others resume their cart or go through the funnel."""
        w = self.world
        in_store = w.draws.bernoulli("caused_in_store", idx, w.traits.store_preference[idx])
        buy_in_store(w, idx[in_store], ts[in_store] + HOUR_US, day)
        idx, ts, channel = idx[~in_store], ts[~in_store], channel[~in_store]
        fresh = ~w.state.cart_open[idx]
        ts = view_products(w, idx, ts, channel, fresh.astype(np.int64))
        ts[fresh] += w.gap(int(fresh.sum()))
        w.events.add(idx[fresh], ts[fresh], "add_to_cart", channel[fresh])
        w.state.cart_open[idx[fresh]] = True
        checkout_and_pay(w, idx, ts, channel, day, sure=True)
