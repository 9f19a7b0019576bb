"""Training labels computed from the normalised frames, point-in-time around each cutoff.

Every label looks at events in a window *relative to a cutoff* t (a snapshot time or a decision time); the
features for the same row only see events strictly before t. Each window is two `searchsorted` lookups in
one sorted integer (customer, time) key, so the cost is a sort of the events plus O(cutoffs · log events).
The definitions (and why) are in docs/labels.md; bump `LABELS_VERSION` whenever one changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from journey.catalog import Catalog
from journey.vocabulary import (
    ENGAGEMENT_EVENTS,
    FUNNEL_STEPS,
    NO_CONTACT,
    PURCHASE_EVENTS,
    RESPONSE_EVENTS,
    EventType,
    Objective,
    Phase,
)

LABELS_VERSION = 2

# Phase rules (days around the cutoff); see docs/labels.md for the marketer's reading of each.
PHASE_PURCHASE_AHEAD_DAYS = 14
PHASE_ADVOCACY_AROUND_DAYS = 30
PHASE_SERVICE_BACK_DAYS = 90
PHASE_RESEARCH_AROUND_DAYS = 14
PHASE_MIN_PRODUCT_VIEWS = 2
PHASE_MIN_ANONYMOUS_PRODUCT_VIEWS = 4
ADVOCACY_MIN_SURVEY_SCORE = 9.0
ADVOCACY_MIN_REVIEW_RATING = 5.0
PHASE_LOOKAHEAD_DAYS = max(PHASE_PURCHASE_AHEAD_DAYS, PHASE_ADVOCACY_AROUND_DAYS, PHASE_RESEARCH_AROUND_DAYS)
"""How far after a cutoff the phase label looks; the dataset grid must leave this much data after t."""

# Churn: "still engaged" means any of these in the horizon.
CHURN_ACTIVITY_EVENTS: frozenset[str] = (
    frozenset(PURCHASE_EVENTS)
    | ENGAGEMENT_EVENTS
    | {EventType.PAGE_VIEW.value}
    | {step.value for step in FUNNEL_STEPS}  # product view, cart, checkout, purchase
)

_CONVERSION_GOALS = frozenset(PURCHASE_EVENTS)
_CONNECTION_GOALS = frozenset({EventType.SIGNUP.value, EventType.REFERRAL.value})
_KNOWLEDGE_GOALS = frozenset({EventType.SURVEY.value, EventType.REVIEW.value})
_AFTER_SALES = frozenset(
    {EventType.SUPPORT_TICKET.value, EventType.SURVEY.value, EventType.REVIEW.value, EventType.REFERRAL.value}
)
_CART_EVENTS = frozenset({EventType.ADD_TO_CART.value, EventType.CHECKOUT.value})
_PURCHASE_INTENT = frozenset({EventType.CHECKOUT.value}) | PURCHASE_EVENTS

RESPONSE_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "event_timestamp",
    "decision_id",
    "action_channel",
    "action_content",
    "propensity",
    "label",
    "value_observed",
    "responded",
    "unsubscribed",
)

# Decision-log feedback outcomes (journey.logbook.FEEDBACK_OUTCOMES) that stand for a response or a reached goal.
FEEDBACK_RESPONSES: frozenset[str] = frozenset({"opened", "clicked"})
FEEDBACK_GOALS: frozenset[str] = frozenset({"converted"})
FEEDBACK_COLUMNS: tuple[str, ...] = ("decision_id", "ts", "outcome", "value")


# --------------------------------------------------------------------------------------------------------------
# Window counting
# --------------------------------------------------------------------------------------------------------------


DAY_US = 86_400_000_000


def _utc(values: pd.Series) -> pd.Series:
    """One timestamp dtype everywhere (the contract's datetime64[us, UTC])."""
    return pd.to_datetime(values, utc=True).dt.as_unit("us")


def _epoch_us(values: pd.Series) -> np.ndarray:
    return _utc(values).astype("int64").to_numpy()


def _days(n: float) -> int:
    return round(n * DAY_US)


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; has {list(frame.columns)}")


@dataclass(frozen=True)
class _Anchors:
    """The (customer, time) points windows are measured from, and the time axis of the events they query.

    Arrays are in the caller's row order. Customer codes are shared with the `_key` of the events frame built
    alongside (see `_timeline`): key = code × width + rank of the event time among distinct event times.
    """

    customer_id: np.ndarray  # str
    code: np.ndarray  # int64
    us: np.ndarray  # int64 microseconds since the epoch
    times: np.ndarray  # sorted distinct event times (int64 µs)
    width: int  # len(times) + 1: one key slot per event time, plus one for "before everything"
    ranks: dict[tuple[int, str], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def rank(self, offset: int, side: Literal["left", "right"]) -> np.ndarray:
        """Key slot of t + offset: events before it (left) or up to it (right) have a smaller key. Cached."""
        if (offset, side) not in self.ranks:
            self.ranks[offset, side] = np.searchsorted(self.times, self.us + offset, side=side) + 1
        return self.ranks[offset, side]

    def __len__(self) -> int:
        return len(self.us)


def _ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the rank of each value among them (a sort, not a hash: faster on times)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.concatenate([[True], ordered[1:] != ordered[:-1]]) if len(values) else np.zeros(0, dtype=bool)
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.cumsum(new) - 1
    return ordered[new], ranks


def _timeline(events: pd.DataFrame, customer_id: pd.Series, ts: pd.Series) -> tuple[pd.DataFrame, _Anchors]:
    """Events sorted on one integer (customer, time) key, and the anchors that query them.

    A window count is then the difference of two `searchsorted` positions in that key: exact at the bounds,
    no loop over rows and no overflow (times are ranks, not microseconds).
    """
    _require(events, ("customer_id", "ts", "event_type"), "events")
    ev_ids = events["customer_id"].astype(str).to_numpy()
    anchor_ids = customer_id.astype(str).to_numpy()
    codes, _ = pd.factorize(np.concatenate([ev_ids, anchor_ids]))
    codes = codes.astype(np.int64)
    ev_us = _epoch_us(events["ts"])
    times, ranks = _ranks(ev_us)
    width = len(times) + 1
    ev = pd.DataFrame(
        {
            "_key": codes[: len(ev_ids)] * width + ranks + 1,
            "event_type": pd.Categorical(events["event_type"].astype(str)),  # fast isin
            "channel": pd.Categorical(events["channel"].astype(str)) if "channel" in events else "",
            "content": pd.Categorical(_tag(events["content"])) if "content" in events else None,
            "value": events["value"].astype("float64").to_numpy() if "value" in events else np.nan,
        }
    )
    ev = ev.sort_values("_key", kind="stable", ignore_index=True)
    anchors = _Anchors(anchor_ids, codes[len(ev_ids) :], _epoch_us(ts), times, width)
    return ev, anchors


def _tag(content: pd.Series) -> pd.Series:
    """Event content as str, None when absent ("" and "none" mean absent too)."""
    text = content.astype(object).where(content.notna(), None)
    return text.where(~text.isin(["", NO_CONTACT]), None)


def _select(events: pd.DataFrame, types: Iterable[str]) -> pd.DataFrame:
    return events.loc[events["event_type"].isin(list(types))]


def _window(
    selected: pd.DataFrame,
    anchors: _Anchors,
    start: int | None,
    end: int,
    closed: Literal["left", "right"] = "left",
) -> tuple[np.ndarray, np.ndarray]:
    """Count and value sum of `selected` events per anchor in [t+start, t+end) ("left") or (t+start, t+end].

    Offsets are in microseconds; None for `start` means from the beginning of time. `selected` must be a row
    subset of the frame `_timeline` returned (so it is still sorted by `_key`).
    """
    n = len(anchors)
    if n == 0 or selected.empty:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.float64)
    keys = selected["_key"].to_numpy()
    running = np.concatenate([[0.0], np.cumsum(np.nan_to_num(selected["value"].to_numpy(dtype=np.float64)))])
    side: Literal["left", "right"] = "left" if closed == "left" else "right"
    base = anchors.code * anchors.width

    def position(offset: int | None) -> np.ndarray:
        """Events of the anchor's customer strictly before (left) or up to (right) t + offset, as a key index."""
        rank = 0 if offset is None else anchors.rank(offset, side)
        return np.searchsorted(keys, base + rank, side="left")

    hi, lo = position(end), position(start)
    return (hi - lo).astype(np.int64), running[hi] - running[lo]


def _cutoff_timeline(events: pd.DataFrame, cutoffs: pd.DataFrame) -> tuple[pd.DataFrame, _Anchors]:
    _require(cutoffs, ("customer_id", "event_timestamp"), "cutoffs")
    return _timeline(events, cutoffs["customer_id"], cutoffs["event_timestamp"])


# --------------------------------------------------------------------------------------------------------------
# Customer-level labels at cutoffs
# --------------------------------------------------------------------------------------------------------------


def purchase_labels(events: pd.DataFrame, cutoffs: pd.DataFrame, horizon_days: int) -> pd.Series:
    """1 if the customer buys (online or in store) in [t, t+horizon); aligned with `cutoffs.index`."""
    ev, anchors = _cutoff_timeline(events, cutoffs)
    n, _ = _window(_select(ev, PURCHASE_EVENTS), anchors, _days(0), _days(horizon_days))
    return pd.Series((n > 0).astype(np.int64), index=cutoffs.index, name="purchase")


def churn_labels(
    events: pd.DataFrame, cutoffs: pd.DataFrame, horizon_days: int, active_window_days: int
) -> pd.DataFrame:
    """Churn = an active customer goes silent: no purchase, visit or response to a contact in [t, t+horizon).

    `eligible` (any event in [t-active, t)) marks the rows a churn model should learn from: a customer who was
    already silent cannot churn again. `label` is 0 for ineligible rows.
    """
    ev, anchors = _cutoff_timeline(events, cutoffs)
    recent, _ = _window(ev, anchors, -_days(active_window_days), _days(0))
    active_after, _ = _window(_select(ev, CHURN_ACTIVITY_EVENTS), anchors, _days(0), _days(horizon_days))
    eligible = recent > 0
    label = eligible & (active_after == 0)
    return pd.DataFrame({"eligible": eligible, "label": label.astype(np.int64)}, index=cutoffs.index)


def _identified(customers: pd.DataFrame, events: pd.DataFrame, anchors: _Anchors, by: int) -> np.ndarray:
    """Known to the brand before t+by: a sign-up timestamp in `customers` or a sign-up event."""
    known = np.zeros(len(anchors), dtype=bool)
    if "signup_ts" in customers.columns and "customer_id" in customers.columns:
        unique = customers.drop_duplicates("customer_id")
        signup_us = pd.Series(
            _utc(unique["signup_ts"]).astype("int64").where(unique["signup_ts"].notna()).to_numpy(),
            index=unique["customer_id"].astype(str).to_numpy(),
        )
        at = pd.Series(anchors.customer_id).map(signup_us).to_numpy(dtype=np.float64)
        known = ~np.isnan(at) & (at < anchors.us + by)
    n, _ = _window(_select(events, {EventType.SIGNUP.value}), anchors, None, by)
    return known | (n > 0)


def _promoter_signals(events: pd.DataFrame) -> pd.DataFrame:
    """Referrals, promoter survey scores (>= 9 of 10) and top-rated reviews (a review without a rating counts)."""
    kind, value = events["event_type"], events["value"]
    survey = (kind == EventType.SURVEY.value) & (value >= ADVOCACY_MIN_SURVEY_SCORE)
    review = (kind == EventType.REVIEW.value) & ~(value < ADVOCACY_MIN_REVIEW_RATING)
    return events.loc[(kind == EventType.REFERRAL.value) | survey | review]


def phase_labels(customers: pd.DataFrame, events: pd.DataFrame, cutoffs: pd.DataFrame) -> pd.Series:
    """The journey phase around each cutoff, by rules a marketer can check (docs/labels.md).

    Precedence: purchase > advocacy > service > consideration > discovery. The imminent sale wins because it is
    the shortest-lived state; an ambassador is a special buyer, so advocacy beats plain service; a recent buyer
    who browses again is served (cross-sell) rather than treated as a new prospect. After-sales contacts
    (tickets, surveys, reviews, referrals) mark a customer even when their purchases predate the event log.
    """
    events, anchors = _cutoff_timeline(events, cutoffs)
    purchases = _select(events, PURCHASE_EVENTS)
    after_sales = _select(events, _AFTER_SALES)

    buys_soon, _ = _window(_select(events, _PURCHASE_INTENT), anchors, _days(0), _days(PHASE_PURCHASE_AHEAD_DAYS))

    around = _days(PHASE_ADVOCACY_AROUND_DAYS)
    promoter, _ = _window(_promoter_signals(events), anchors, -around, around)
    has_bought, _ = _window(purchases, anchors, None, _days(0))
    served_before, _ = _window(after_sales, anchors, None, _days(0))
    # An after-sales contact soon after t shows a customer at t, unless a purchase in between explains it.
    served_next, _ = _window(after_sales, anchors, _days(0), around)
    bought_next, _ = _window(purchases, anchors, _days(0), around)
    served_after = (served_next > 0) & (bought_next == 0)
    customer = (has_bought > 0) | (served_before > 0) | served_after

    recent_buys, _ = _window(purchases, anchors, -_days(PHASE_SERVICE_BACK_DAYS), _days(0))
    served_recently, _ = _window(after_sales, anchors, -_days(PHASE_SERVICE_BACK_DAYS), _days(0))

    research = _days(PHASE_RESEARCH_AROUND_DAYS)
    views, _ = _window(_select(events, {EventType.PRODUCT_VIEW.value}), anchors, -research, research)
    carts, _ = _window(_select(events, _CART_EVENTS), anchors, -research, research)
    identified = _identified(customers, events, anchors, research)
    min_views = np.where(identified, PHASE_MIN_PRODUCT_VIEWS, PHASE_MIN_ANONYMOUS_PRODUCT_VIEWS)
    researching = (views >= min_views) | (carts > 0)

    phase = np.select(
        [
            buys_soon > 0,
            (promoter > 0) & customer,
            (recent_buys > 0) | (served_recently > 0) | served_after,
            researching,
        ],
        [Phase.PURCHASE.value, Phase.ADVOCACY.value, Phase.SERVICE.value, Phase.CONSIDERATION.value],
        default=Phase.DISCOVERY.value,
    )
    return pd.Series(phase, index=cutoffs.index, name="phase", dtype=object)


# --------------------------------------------------------------------------------------------------------------
# Response (S-learner) rows
# --------------------------------------------------------------------------------------------------------------


def _on_channel(events: pd.DataFrame, channel: str) -> pd.Series:
    """Mask of the events that are a response on `channel`; channels outside the vocabulary use their own."""
    if channel in RESPONSE_EVENTS:
        return events["event_type"].isin(list(RESPONSE_EVENTS[channel]))
    return events["event_type"].isin(list(ENGAGEMENT_EVENTS)) & (events["channel"] == channel)


def _responses_to(events: pd.DataFrame, content: str, channels: Iterable[str]) -> pd.DataFrame:
    """Response events that answer `content`: tagged with it, or untagged on one of the channels it can use.

    The same definition serves treated and control rows of a content, so their labels measure one outcome.
    """
    tagged = events["event_type"].isin(list(ENGAGEMENT_EVENTS)) & (events["content"] == content)
    untagged = events["content"].isna() & np.logical_or.reduce(
        [_on_channel(events, c).to_numpy() for c in channels], initial=False
    )
    return events.loc[tagged.to_numpy() | untagged]


@dataclass(frozen=True)
class _Outcomes:
    """What happened in (ts, ts+window] after each contact, one array per goal ingredient."""

    purchases: np.ndarray
    purchase_value: np.ndarray
    connections: np.ndarray
    product_views: np.ndarray
    knowledge: np.ndarray
    responded: dict[str, np.ndarray]  # catalog content -> a response to that content
    unsubscribed: dict[str, np.ndarray]  # catalog channel -> an unsubscribe from that channel

    def goal(self, objective: str, response: np.ndarray, count_responses: bool = True) -> np.ndarray:
        """Whether an `objective` goal was reached, given the response indicator that applies to the row.

        `count_responses=False` counts the goal events alone (sign-up/referral, product view): a click is not a
        sign-up, and counting it makes every click-prone contact look incremental (docs/policy-evaluation.md).
        """
        response = response if count_responses else np.zeros_like(response)
        if objective == Objective.CONVERSION:
            return self.purchases > 0
        if objective == Objective.CONNECTION:
            return (self.connections > 0) | response
        if objective == Objective.CONSIDERATION:
            return (self.product_views > 0) | response
        if objective == Objective.KNOWLEDGE:
            return self.knowledge > 0
        raise ValueError(f"unknown objective {objective!r}")

    def take(self, rows: np.ndarray) -> _Outcomes:
        return _Outcomes(
            self.purchases[rows],
            self.purchase_value[rows],
            self.connections[rows],
            self.product_views[rows],
            self.knowledge[rows],
            {c: r[rows] for c, r in self.responded.items()},
            {c: u[rows] for c, u in self.unsubscribed.items()},
        )


def _outcomes(events: pd.DataFrame, anchors: _Anchors, catalog: Catalog, window: int) -> _Outcomes:
    def count(selected: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return _window(selected, anchors, _days(0), window, closed="right")

    purchases, value = count(_select(events, _CONVERSION_GOALS))
    unsubscribes = _select(events, {EventType.UNSUBSCRIBE.value})
    return _Outcomes(
        purchases=purchases,
        purchase_value=value,
        connections=count(_select(events, _CONNECTION_GOALS))[0],
        product_views=count(_select(events, {EventType.PRODUCT_VIEW.value}))[0],
        knowledge=count(_select(events, _KNOWLEDGE_GOALS))[0],
        responded={k: count(_responses_to(events, k, spec.channels))[0] > 0 for k, spec in catalog.contents.items()},
        unsubscribed={c: count(unsubscribes.loc[unsubscribes["channel"] == c])[0] > 0 for c in catalog.channels},
    )


def _response_rows(
    contacts: pd.DataFrame,
    channel: pd.Series,
    content: pd.Series,
    label: np.ndarray,
    value: np.ndarray,
    responded: np.ndarray,
    unsubscribed: np.ndarray,
) -> pd.DataFrame:
    contacts = contacts.reset_index(drop=True)
    return pd.DataFrame(
        {
            "customer_id": contacts["customer_id"].astype(str),
            "event_timestamp": _utc(contacts["ts"]),
            "decision_id": contacts["decision_id"].astype(str),
            "action_channel": channel.astype(str).to_numpy(),
            "action_content": content.astype(str).to_numpy(),
            "propensity": contacts["propensity"].astype("float64") if "propensity" in contacts else np.nan,
            "label": label.astype(np.int64),
            "value_observed": value.astype(np.float64),
            "responded": responded.astype(np.int64),
            "unsubscribed": unsubscribed.astype(np.int64),
        }
    )


def _treated_rows(
    contacts: pd.DataFrame, out: _Outcomes, catalog: Catalog, told: _Feedback, count_responses: bool
) -> pd.DataFrame:
    """Logged contacts: was the goal of the sent content reached in the window (events, else feedback)."""
    channel = contacts["channel"].astype(str).reset_index(drop=True)
    content = contacts["content"].astype(str).reset_index(drop=True)
    response = told.responded.copy()
    for name, responded in out.responded.items():
        response |= (content == name).to_numpy() & responded
    label = told.converted.copy()  # the client says the contact reached its goal
    objective = content.map({k: spec.objective.value for k, spec in catalog.contents.items()})
    for obj in Objective:
        rows = (objective == obj.value).to_numpy()
        label |= rows & out.goal(obj.value, response, count_responses)
    conversion = (objective == Objective.CONVERSION.value).to_numpy()
    value = np.where(conversion, np.where(out.purchases > 0, out.purchase_value, told.value), np.nan)
    unsubscribed = np.zeros(len(contacts), dtype=bool)
    for name, left in out.unsubscribed.items():
        unsubscribed |= (channel == name).to_numpy() & left
    return _response_rows(contacts, channel, content, label, value, response, unsubscribed)


def _control_rows(
    contacts: pd.DataFrame, out: _Outcomes, catalog: Catalog, told: _Feedback, count_responses: bool
) -> pd.DataFrame:
    """Logged "none" decisions, once per content k: was k's goal reached anyway (same definition as treated).

    A `converted` feedback on a "none" decision is a purchase the client reported: it counts for the conversion
    contents only (the only goal "converted" names without a content)."""
    parts: list[pd.DataFrame] = []
    none = pd.Series([NO_CONTACT] * len(contacts), dtype=object)
    for name, spec in catalog.contents.items():
        conversion = spec.objective == Objective.CONVERSION
        label = out.goal(spec.objective.value, out.responded[name], count_responses)
        if conversion:
            label = label | told.converted
        value = (
            np.where(out.purchases > 0, out.purchase_value, told.value)
            if conversion
            else np.full(len(contacts), np.nan)
        )
        content = pd.Series([name] * len(contacts), dtype=object)
        nothing = np.zeros(len(contacts), dtype=bool)
        rows = _response_rows(contacts, none, content, label, value, nothing, nothing)
        rows["_k"] = len(parts)
        parts.append(rows)
    frame = pd.concat(parts, ignore_index=True)
    frame["_d"] = np.tile(np.arange(len(contacts)), len(parts))
    return frame.sort_values(["_d", "_k"], kind="stable").drop(columns=["_d", "_k"])


@dataclass(frozen=True)
class _Feedback:
    """Per contact, what the decision log's feedback says happened in its window."""

    responded: np.ndarray  # opened / clicked
    converted: np.ndarray
    value: np.ndarray  # value of the conversion feedback (0 when none)

    def take(self, rows: np.ndarray) -> _Feedback:
        return _Feedback(self.responded[rows], self.converted[rows], self.value[rows])


def feedback_outcomes(
    contacts: pd.DataFrame, feedback: pd.DataFrame | None, window_days: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(responded, converted, value) per contact row from `feedback` (`DecisionLog.feedback_frame()`):
    outcomes logged for the contact's decision within [ts, ts + window]. Unknown decisions are ignored."""
    n = len(contacts)
    responded, converted, value = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, np.float64)
    if feedback is None or feedback.empty or n == 0:
        return responded, converted, value
    _require(feedback, FEEDBACK_COLUMNS[:3], "feedback")
    sent = pd.DataFrame(
        {"decision_id": contacts["decision_id"].astype(str).to_numpy(), "_sent": _epoch_us(contacts["ts"]),
         "_row": np.arange(n)}
    )  # fmt: skip
    told = pd.DataFrame(
        {
            "decision_id": feedback["decision_id"].astype(str).to_numpy(),
            "_at": _epoch_us(feedback["ts"]),
            "outcome": feedback["outcome"].astype(str).to_numpy(),
            "value": pd.to_numeric(feedback["value"], errors="coerce").to_numpy(np.float64)
            if "value" in feedback
            else np.nan,
        }
    )
    joined = sent.merge(told, on="decision_id", how="inner")
    joined = joined.loc[(joined["_at"] >= joined["_sent"]) & (joined["_at"] <= joined["_sent"] + _days(window_days))]
    for mask, target in (
        (joined["outcome"].isin(list(FEEDBACK_RESPONSES | FEEDBACK_GOALS)), responded),
        (joined["outcome"].isin(list(FEEDBACK_GOALS)), converted),
    ):
        target[joined.loc[mask, "_row"].to_numpy()] = True
    goals = joined.loc[joined["outcome"].isin(list(FEEDBACK_GOALS))]
    sums = goals.groupby("_row")["value"].sum(min_count=1).fillna(0.0)
    value[sums.index.to_numpy()] = sums.to_numpy()
    return responded, converted, value


def response_dataset(
    contacts: pd.DataFrame,
    events: pd.DataFrame,
    catalog: Catalog,
    window_days: int,
    feedback: pd.DataFrame | None = None,
    count_responses: bool = True,
) -> pd.DataFrame:
    """S-learner rows: logged contacts (treated) and logged "none" decisions expanded per content (control).

    Labels count goal events in (ts, ts+window]: the contact itself is at ts, so an event logged at the same
    instant belongs to the past. Contacts whose channel or content is not in the catalog are dropped (their
    goal is undefined and the model could not encode them). Rows are sorted by time, then decision, then
    content in catalog order. Callers must drop contacts whose window runs past the end of the data.

    `feedback` (the decision log's `feedback_frame()`) fills in what the events do not show: a `converted`
    outcome in the window makes a treated row positive (its value is the purchase value when no purchase event
    says otherwise), `opened`/`clicked` count as a response to the content. `count_responses=False` labels
    connection and consideration contents by their goal events alone (no clicks).
    """
    _require(contacts, ("decision_id", "customer_id", "ts", "channel", "content"), "contacts")
    channel = contacts["channel"].astype(str)
    known = channel.isin(list(catalog.channels)) & contacts["content"].astype(str).isin(list(catalog.contents))
    rows = contacts.loc[(known | (channel == NO_CONTACT)).to_numpy()].reset_index(drop=True)
    if rows.empty:
        return _empty_response_frame()
    ev, anchors = _timeline(events, rows["customer_id"], rows["ts"])
    out = _outcomes(ev, anchors, catalog, _days(window_days))
    told = _Feedback(*feedback_outcomes(rows, feedback, window_days))
    control = (rows["channel"].astype(str) == NO_CONTACT).to_numpy()
    frame = pd.concat(
        [
            _treated_rows(rows.loc[~control], out.take(~control), catalog, told.take(~control), count_responses),
            _control_rows(rows.loc[control], out.take(control), catalog, told.take(control), count_responses),
        ],
        ignore_index=True,
    )
    return frame.sort_values(["event_timestamp", "decision_id"], kind="stable").reset_index(drop=True)


def _empty_response_frame() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in RESPONSE_COLUMNS})
    frame["event_timestamp"] = pd.Series(dtype="datetime64[us, UTC]")
    frame["propensity"] = frame["value_observed"] = pd.Series(dtype="float64")
    frame["label"] = frame["responded"] = frame["unsubscribed"] = pd.Series(dtype="int64")
    return frame


# --------------------------------------------------------------------------------------------------------------
# Reporting only: the simulator's latent truth. NEVER used to build features or labels.
# --------------------------------------------------------------------------------------------------------------


def true_phase_at(truth_phase_history: pd.DataFrame, cutoffs: pd.DataFrame) -> pd.Series:
    """The simulator's latent phase in force at each cutoff (last change at or before t), for reporting only.

    `truth_phase_history` has `customer_id`, `ts`, `phase` (one row per phase change, from
    data/<name>/ground_truth/). None where the customer had no phase yet. Use it to score `phase_labels`
    or a phase model against the truth, never as a training input.
    """
    _require(truth_phase_history, ("customer_id", "ts", "phase"), "truth_phase_history")
    _require(cutoffs, ("customer_id", "event_timestamp"), "cutoffs")
    left = pd.DataFrame(
        {
            "customer_id": cutoffs["customer_id"].astype(str).to_numpy(),
            "_t": _utc(cutoffs["event_timestamp"]).to_numpy(),
            "_row": np.arange(len(cutoffs)),
        }
    )
    left["_t"] = _utc(left["_t"])
    right = pd.DataFrame(
        {
            "customer_id": truth_phase_history["customer_id"].astype(str),
            "ts": _utc(truth_phase_history["ts"]),
            "phase": truth_phase_history["phase"].astype(str),
        }
    )
    merged = pd.merge_asof(
        left.sort_values("_t", kind="stable"),
        right.sort_values("ts", kind="stable"),
        left_on="_t",
        right_on="ts",
        by="customer_id",
        direction="backward",
    ).sort_values("_row")
    phase = merged["phase"].astype(object).where(merged["phase"].notna(), None)
    return pd.Series(phase.to_numpy(), index=cutoffs.index, name="true_phase", dtype=object)
