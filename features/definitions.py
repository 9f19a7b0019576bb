"""The feature registry: one entry per customer feature, the single source of truth.

`features.build` must return exactly `FEATURE_NAMES` (a test checks it), the Feast schema and feature views are
generated from `FEATURES`, and `docs/features.md` is rendered from it, so a feature cannot exist in one place and
be missing or misdescribed in another.

Conventions (the same for every feature, see docs/features.md):
- a snapshot at time t only sees events and contacts with `ts < t` (strictly);
- a window of w days is the half-open interval `[t - w days, t)`: an event exactly at `t - w` is inside,
  one exactly at `t` is not; `window_days=None` means all history before t (or a state at t);
- counts are 0 when nothing happened; ratios and "days since" are NaN when undefined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from journey.vocabulary import CONSENT_COLUMNS, RESPONSE_EVENTS, Channel, EventType

Dtype = Literal["float", "int"]

FAMILIES: tuple[str, ...] = (
    "rfm",
    "activity",
    "funnel",
    "engagement",
    "pressure",
    "omnichannel",
    "relationship",
    "consent",
)

# Fixed order of response/contact channels: `last_response_channel` is the index in this tuple (-1 = none).
RESPONSE_CHANNELS: tuple[str, ...] = tuple(str(c) for c in RESPONSE_EVENTS)
CONTACT_CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel if c is not Channel.NONE)
# Consent columns in a fixed order, with the event channel whose `unsubscribe` revokes each one.
CONSENT_CHANNELS: dict[str, str] = {column: str(channel) for channel, column in CONSENT_COLUMNS.items()}

SESSION_DEFINITION = "the last UTC calendar day with an event before t (its events before t)"


@dataclass(frozen=True)
class FeatureDef:
    """One feature: its column name, type, family (= Feast feature view), meaning, window and source events."""

    name: str
    dtype: Dtype
    family: str
    description: str
    window_days: int | None
    sources: tuple[str, ...]


_PURCHASES = (EventType.PURCHASE.value, EventType.STORE_PURCHASE.value)
_CONTACTS = ("contacts",)


def _f(name: str, dtype: Dtype, family: str, window: int | None, sources: tuple[str, ...], text: str) -> FeatureDef:
    return FeatureDef(name, dtype, family, text, window, sources)


def _rfm() -> list[FeatureDef]:
    out = [
        _f(
            "recency_purchase_days",
            "float",
            "rfm",
            None,
            _PURCHASES,
            "Days from the last purchase (online or store) to t; NaN if none.",
        ),
        _f(
            "last_purchase_epoch_days",
            "float",
            "rfm",
            None,
            _PURCHASES,
            "Time of the last purchase in days since 1970-01-01 UTC (for request-time recency); NaN if none.",
        ),
    ]
    for w in (30, 90, 365):
        out += [
            _f(f"purchases_{w}d", "int", "rfm", w, _PURCHASES, "Number of purchases, online and store (frequency)."),
            _f(f"monetary_{w}d", "float", "rfm", w, _PURCHASES, "Sum of purchase values, online and store."),
            _f(
                f"avg_basket_{w}d",
                "float",
                "rfm",
                w,
                _PURCHASES,
                "Average purchase value (monetary / purchases with a value); NaN if no valued purchase.",
            ),
        ]
    out += [
        _f("purchases_total", "int", "rfm", None, _PURCHASES, "Number of purchases ever, online and store."),
        _f("monetary_total", "float", "rfm", None, _PURCHASES, "Sum of purchase values ever."),
        _f(
            "tenure_days",
            "float",
            "rfm",
            None,
            ("any", "signup_ts"),
            "Days since the customer arrived: the earlier of the first event and the sign-up.",
        ),
        _f("days_since_signup", "float", "rfm", None, ("signup_ts",), "Days since sign-up; NaN if not signed up."),
        _f(
            "days_from_signup_to_first_purchase",
            "float",
            "rfm",
            None,
            ("signup_ts", *_PURCHASES),
            "First purchase time minus sign-up time in days (negative: bought before signing up); NaN unless "
            "both happened before t.",
        ),
        _f("is_identified", "int", "rfm", None, ("signup_ts",), "1 if the customer signed up before t, else 0."),
    ]
    return out


_EVENT_CHANNEL_COUNTS: tuple[tuple[str, int], ...] = (
    ("web", 30),
    ("app", 30),
    ("search", 30),
    ("social_ad", 30),
    ("email", 30),
    ("store", 90),
)


def _activity() -> list[FeatureDef]:
    out = [_f(f"events_{w}d", "int", "activity", w, ("any",), "Number of events of any type.") for w in (1, 7, 30, 90)]
    out += [
        _f(
            f"active_days_{w}d",
            "int",
            "activity",
            w,
            ("any",),
            "Number of UTC calendar days with at least one event (exact for 00:00 UTC snapshots; otherwise the "
            "day straddling t - w counts only if its first event is inside the window).",
        )
        for w in (7, 30, 90)
    ]
    out += [_f(f"page_views_{w}d", "int", "activity", w, ("page_view",), "Page views.") for w in (7, 30)]
    out += [
        _f(f"product_views_{w}d", "int", "activity", w, ("product_view",), "Product page views.")
        for w in (1, 7, 30, 90)
    ]
    out += [
        _f(f"events_{ch}_{w}d", "int", "activity", w, ("any",), f"Events of any type on the `{ch}` channel.")
        for ch, w in _EVENT_CHANNEL_COUNTS
    ]
    out += [
        _f(
            "activity_score",
            "float",
            "activity",
            365,
            ("any",),
            "Time-decayed activity: sum over events of exp(-age / 7 days), age = t - ts.",
        ),
        _f("events_total", "int", "activity", None, ("any",), "Number of events ever."),
        _f(
            "last_event_epoch_days",
            "float",
            "activity",
            None,
            ("any",),
            "Time of the last event in days since 1970-01-01 UTC (request-time `days_since_last_event` is "
            "computed from it); NaN if none.",
        ),
    ]
    return out


def _funnel() -> list[FeatureDef]:
    out: list[FeatureDef] = []
    for w in (7, 30):
        out += [
            _f(f"add_to_cart_{w}d", "int", "funnel", w, ("add_to_cart",), "Add-to-cart events."),
            _f(f"checkouts_{w}d", "int", "funnel", w, ("checkout",), "Checkout events."),
        ]
    steps = "product_view=1, add_to_cart=2, checkout=3, purchase=4 (online), 0 = none"
    out += [
        _f(
            "funnel_depth_7d",
            "int",
            "funnel",
            7,
            ("product_view", "add_to_cart", "checkout", "purchase"),
            f"Deepest funnel step reached: {steps}.",
        ),
        _f(
            "funnel_depth_last_session",
            "int",
            "funnel",
            None,
            ("product_view", "add_to_cart", "checkout", "purchase"),
            f"Deepest funnel step reached in the last session ({SESSION_DEFINITION}): {steps}.",
        ),
        _f(
            "cart_abandoned_7d",
            "int",
            "funnel",
            7,
            ("add_to_cart", "checkout", *_PURCHASES),
            "1 if the last add_to_cart or checkout of the window has no purchase (online or store) at or after "
            "it (before t), else 0.",
        ),
        _f(
            "cart_open",
            "int",
            "funnel",
            None,
            ("add_to_cart", "checkout", *_PURCHASES),
            "1 if the customer's last add_to_cart or checkout ever has no purchase (online or store) at or after it "
            "(before t), else 0: a cart stays open until a purchase, however old (cart_abandoned_7d is its last week).",
        ),
        _f(
            "days_since_last_cart",
            "float",
            "funnel",
            None,
            ("add_to_cart", "checkout"),
            "Days since the last add_to_cart or checkout; NaN if none.",
        ),
        _f(
            "product_views_since_last_purchase",
            "int",
            "funnel",
            None,
            ("product_view", *_PURCHASES),
            "Product views strictly after the last purchase (all product views if never purchased).",
        ),
        _f(
            "view_to_cart_rate_90d",
            "float",
            "funnel",
            90,
            ("product_view", "add_to_cart"),
            "add_to_cart / product_view; NaN if no product view.",
        ),
        _f(
            "cart_to_purchase_rate_90d",
            "float",
            "funnel",
            90,
            ("add_to_cart", "purchase"),
            "Online purchases / add_to_cart; NaN if no add_to_cart.",
        ),
    ]
    return out


def _engagement() -> list[FeatureDef]:
    out = [
        _f(
            f"response_rate_{ch}_90d",
            "float",
            "engagement",
            90,
            (*sorted(RESPONSE_EVENTS[ch]), "contacts"),
            f"Responses on `{ch}` ({', '.join(sorted(RESPONSE_EVENTS[ch]))}) per `{ch}` contact received; "
            "NaN if no contact (can exceed 1: organic responses count too).",
        )
        for ch in RESPONSE_CHANNELS
    ]
    engagement = tuple(sorted(set().union(*RESPONSE_EVENTS.values())))
    out += [
        _f(f"responses_{w}d", "int", "engagement", w, engagement, "Response events on any channel.")
        for w in (7, 30, 90)
    ]
    codes = ", ".join(f"{i}={c}" for i, c in enumerate(RESPONSE_CHANNELS))
    out += [
        _f("email_opens_90d", "int", "engagement", 90, ("email_open",), "Email opens."),
        _f("email_clicks_90d", "int", "engagement", 90, ("email_click",), "Email clicks."),
        _f(
            "last_response_channel",
            "int",
            "engagement",
            None,
            engagement,
            f"Channel of the last response event, coded {codes}, -1 = none.",
        ),
        _f(
            "days_since_last_response",
            "float",
            "engagement",
            None,
            engagement,
            "Days since the last response event on any channel; NaN if none.",
        ),
    ]
    return out


def _pressure() -> list[FeatureDef]:
    out = [
        _f(f"contacts_{ch}_{w}d", "int", "pressure", w, _CONTACTS, f"Contacts received on `{ch}`.")
        for ch in CONTACT_CHANNELS
        for w in (1, 7, 30)
    ]
    out += [
        _f(f"contacts_{w}d", "int", "pressure", w, _CONTACTS, "Contacts received on any channel (not `none`).")
        for w in (7, 30, 90)
    ]
    engagement = tuple(sorted(set().union(*RESPONSE_EVENTS.values())))
    out += [
        _f(
            "days_since_last_contact",
            "float",
            "pressure",
            None,
            _CONTACTS,
            "Days since the last contact (not `none`); NaN if none.",
        ),
        _f(
            "last_contact_epoch_days",
            "float",
            "pressure",
            None,
            _CONTACTS,
            "Time of the last contact in days since 1970-01-01 UTC (for request-time recency); NaN if none.",
        ),
        _f(
            "responses_since_last_contact",
            "int",
            "pressure",
            None,
            ("contacts", *engagement),
            "Response events strictly after the last contact; 0 if never contacted.",
        ),
        _f("unsubscribes_30d", "int", "pressure", 30, ("unsubscribe",), "Unsubscribe events on any channel."),
    ]
    return out


def _omnichannel() -> list[FeatureDef]:
    return [
        _f("online_purchases_365d", "int", "omnichannel", 365, ("purchase",), "Online purchases."),
        _f("store_purchases_365d", "int", "omnichannel", 365, ("store_purchase",), "Store purchases."),
        _f(
            "store_purchase_share_365d",
            "float",
            "omnichannel",
            365,
            _PURCHASES,
            "Store purchases / all purchases; NaN if no purchase.",
        ),
        _f(
            "robo_purchases_365d",
            "int",
            "omnichannel",
            365,
            ("store_purchase", "product_view"),
            "Research online, buy offline: store purchases preceded by a product view in the 7 days before.",
        ),
        _f("distinct_channels_30d", "int", "omnichannel", 30, ("any",), "Number of distinct event channels used."),
        _f("distinct_channels_90d", "int", "omnichannel", 90, ("any",), "Number of distinct event channels used."),
    ]


def _relationship() -> list[FeatureDef]:
    return [
        _f(
            "last_survey_score",
            "float",
            "relationship",
            None,
            ("survey",),
            "Value of the last survey answer that has a value; NaN if none.",
        ),
        _f("support_tickets_90d", "int", "relationship", 90, ("support_ticket",), "Support tickets."),
        _f("reviews_365d", "int", "relationship", 365, ("review",), "Reviews written."),
        _f("referrals_365d", "int", "relationship", 365, ("referral",), "Referrals made."),
    ]


def _consent() -> list[FeatureDef]:
    out = [
        _f(
            column,
            "int",
            "consent",
            None,
            ("customers", "unsubscribe"),
            f"1 if consent for `{channel}` held at t: today's `{column}`, or an unsubscribe on `{channel}` at or "
            "after t (so it was still given at t).",
        )
        for column, channel in sorted(CONSENT_CHANNELS.items())
    ]
    out.append(
        _f(
            "consent_count",
            "int",
            "consent",
            None,
            ("customers", "unsubscribe"),
            "Number of channels with consent at t.",
        )
    )
    return out


FEATURES: tuple[FeatureDef, ...] = (
    *_rfm(),
    *_activity(),
    *_funnel(),
    *_engagement(),
    *_pressure(),
    *_omnichannel(),
    *_relationship(),
    *_consent(),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURES_BY_NAME: dict[str, FeatureDef] = {f.name: f for f in FEATURES}


def features_of(family: str) -> tuple[FeatureDef, ...]:
    """The features of one family, in registry order (one Feast feature view per family)."""
    return tuple(f for f in FEATURES if f.family == family)
