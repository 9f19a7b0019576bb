"""Feature snapshots: exact values at window boundaries, no leakage, bare logs, consent, cart abandonment, and a
brute-force oracle over random logs with many simultaneous events."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, snapshot_times
from features.catalog_doc import DEFAULT_PATH, render
from features.definitions import FAMILIES, FEATURE_NAMES, FEATURES
from features.request import REQUEST_FEATURE_NAMES, add_request_features
from journey.vocabulary import CONSENT_FIELDS, EventType

T = pd.Timestamp("2024-03-01", tz="UTC")
D = pd.Timedelta(days=1)
H = pd.Timedelta(hours=1)
US = pd.Timedelta(microseconds=1)
NAN = float("nan")

EVENT_COLUMNS = ["customer_id", "ts", "event_type", "channel", "content", "value"]
CONTACT_COLUMNS = ["decision_id", "customer_id", "ts", "channel", "content", "propensity", "policy"]


def _events(rows: list[tuple[Any, ...]], customer: str = "a") -> pd.DataFrame:
    """rows: (ts, event_type[, channel[, value]])."""
    full = [(customer, r[0], r[1], r[2] if len(r) > 2 else "web", None, r[3] if len(r) > 3 else NAN) for r in rows]
    frame = pd.DataFrame(full, columns=EVENT_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
    return frame


def _contacts(rows: list[tuple[pd.Timestamp, str]], customer: str = "a") -> pd.DataFrame:
    full = [(f"d{i}", customer, ts, ch, "x", 0.5, "p") for i, (ts, ch) in enumerate(rows)]
    frame = pd.DataFrame(full, columns=CONTACT_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
    return frame


def _customers(ids: list[str], signup: pd.Timestamp | None = None, **consents: bool) -> pd.DataFrame:
    frame = pd.DataFrame({"customer_id": ids, "signup_ts": pd.Series([signup] * len(ids), dtype="datetime64[us, UTC]")})
    for column in CONSENT_FIELDS:
        frame[column] = consents.get(column, False)
    return frame


def _one(
    events: list[tuple[Any, ...]],
    contacts: list[tuple[pd.Timestamp, str]] = (),  # type: ignore[assignment]
    signup: pd.Timestamp | None = None,
    at: pd.Timestamp = T,
) -> pd.Series:
    """Features of the single customer "a" at `at`; an old page view makes sure the customer exists."""
    rows = [(at - 400 * D, "page_view"), *events]
    out = build_features(_customers(["a"], signup), _events(rows), _contacts(list(contacts)), [at])
    assert len(out) == 1
    return out.iloc[0]


# (case, events, contacts, signup, {feature: expected}); windows are [t - w, t)
CASES: list[tuple[str, list[tuple[Any, ...]], list[tuple[pd.Timestamp, str]], Any, dict[str, float]]] = [
    (
        "event exactly at t is excluded",
        [(T, "product_view")],
        [],
        None,
        {"product_views_1d": 0, "events_1d": 0, "events_total": 1},
    ),
    (
        "event exactly at t - 7d is in the 7-day window",
        [(T - 7 * D, "product_view")],
        [],
        None,
        {"product_views_7d": 1, "product_views_1d": 0},
    ),
    (
        "1 us earlier it is not",
        [(T - 7 * D - US, "product_view")],
        [],
        None,
        {"product_views_7d": 0, "product_views_30d": 1},
    ),
    (
        "1-day window",
        [(T - D, "product_view"), (T - D - US, "product_view")],
        [],
        None,
        {"product_views_1d": 1, "product_views_7d": 2},
    ),
    (
        "rfm at the 30-day edge",
        [
            (T - 30 * D, "purchase", "web", 10.0),
            (T - 29 * D, "store_purchase", "store", 30.0),
            (T - 31 * D, "purchase", "web", 5.0),
        ],
        [],
        None,
        {
            "purchases_30d": 2,
            "monetary_30d": 40.0,
            "avg_basket_30d": 20.0,
            "purchases_90d": 3,
            "monetary_90d": 45.0,
            "purchases_total": 3,
            "monetary_total": 45.0,
        },
    ),
    (
        "average basket ignores purchases without a value",
        [(T - 2 * D, "store_purchase", "store", NAN), (T - 3 * D, "purchase", "web", 50.0)],
        [],
        None,
        {"purchases_30d": 2, "monetary_30d": 50.0, "avg_basket_30d": 50.0},
    ),
    (
        "recency in days",
        [(T - 2.5 * D, "purchase", "web", 1.0)],
        [],
        None,
        {"recency_purchase_days": 2.5, "last_purchase_epoch_days": (T - 2.5 * D).value / 86_400e9},
    ),
    (
        "tenure from signup when earlier",
        [(T - 10 * D, "purchase", "web", 1.0)],
        [],
        T - 420 * D,
        {
            "tenure_days": 420.0,
            "days_since_signup": 420.0,
            "is_identified": 1,
            "days_from_signup_to_first_purchase": 410.0,
        },
    ),
    (
        "signup after t does not count",
        [],
        [],
        T + D,
        {"tenure_days": 400.0, "is_identified": 0, "days_since_signup": NAN},
    ),
    (
        "active days are calendar days",
        [(T - H, "page_view"), (T - 2 * H, "page_view"), (T - 3 * D, "page_view")],
        [],
        None,
        {"active_days_7d": 2, "events_7d": 3},
    ),
    (
        "funnel depth over 7 days",
        [(T - D, "product_view"), (T - 6 * D, "checkout"), (T - 8 * D, "purchase")],
        [],
        None,
        {"funnel_depth_7d": 3},
    ),
    (
        "funnel depth of the last session (day)",
        [(T - 3 * D, "checkout"), (T - D + H, "product_view")],
        [],
        None,
        {"funnel_depth_last_session": 1},
    ),
    (
        "cart abandoned",
        [(T - 2 * D, "add_to_cart")],
        [],
        None,
        {"cart_abandoned_7d": 1, "cart_open": 1, "days_since_last_cart": 2.0},
    ),
    (
        "cart then purchase",
        [(T - 2 * D, "add_to_cart"), (T - D, "purchase", "web", 9.0)],
        [],
        None,
        {"cart_abandoned_7d": 0, "cart_open": 0},
    ),
    (
        "purchase at the same time as the cart",
        [(T - 2 * D, "checkout"), (T - 2 * D, "purchase", "web", 9.0)],
        [],
        None,
        {"cart_abandoned_7d": 0},
    ),
    (
        "purchase before the cart",
        [(T - 3 * D, "purchase", "web", 9.0), (T - 2 * D, "add_to_cart")],
        [],
        None,
        {"cart_abandoned_7d": 1},
    ),
    (
        "store purchase closes the cart",
        [(T - 3 * D, "add_to_cart"), (T - 2 * D, "store_purchase", "store", 5.0)],
        [],
        None,
        {"cart_abandoned_7d": 0, "cart_open": 0},
    ),
    ("cart older than 7 days", [(T - 7 * D - US, "add_to_cart")], [], None, {"cart_abandoned_7d": 0, "cart_open": 1}),
    ("no cart ever", [(T - 2 * D, "product_view")], [], None, {"cart_abandoned_7d": 0, "cart_open": 0}),
    (
        "old cart closed by an old purchase",
        [(T - 40 * D, "add_to_cart"), (T - 30 * D, "purchase", "web", 9.0)],
        [],
        None,
        {"cart_open": 0},
    ),
    (
        "purchase after t does not close the cart",
        [(T - 2 * D, "add_to_cart"), (T, "purchase", "web", 1.0)],
        [],
        None,
        {"cart_abandoned_7d": 1},
    ),
    (
        "product views since the last purchase",
        [
            (T - 5 * D, "product_view"),
            (T - 4 * D, "purchase", "web", 1.0),
            (T - 4 * D, "product_view"),
            (T - 3 * D, "product_view"),
            (T - 2 * D, "product_view"),
        ],
        [],
        None,
        {"product_views_since_last_purchase": 2},
    ),
    (
        "response rate per contact",
        [(T - 9 * D, "email_open", "email"), (T - 8 * D, "email_click", "email")],
        [(T - 10 * D, "email"), (T - 20 * D, "email"), (T - 91 * D, "email"), (T - 5 * D, "none")],
        None,
        {
            "response_rate_email_90d": 1.0,
            "response_rate_sms_90d": NAN,
            "contacts_90d": 2,
            "responses_90d": 2,
            "email_opens_90d": 1,
            "email_clicks_90d": 1,
        },
    ),
    (
        "last response channel code",
        [(T - 5 * D, "sms_click", "sms"), (T - 3 * D, "push_open", "app")],
        [],
        None,
        {"last_response_channel": 2, "days_since_last_response": 3.0},
    ),
    ("no response", [], [], None, {"last_response_channel": -1, "days_since_last_response": NAN}),
    (
        "contact windows",
        [],
        [(T - D, "email"), (T, "email"), (T - 7 * D, "sms"), (T - 30 * D, "mail")],
        None,
        {
            "contacts_email_1d": 1,
            "contacts_sms_1d": 0,
            "contacts_sms_7d": 1,
            "contacts_mail_7d": 0,
            "contacts_mail_30d": 1,
            "contacts_7d": 2,
            "contacts_30d": 3,
            "days_since_last_contact": 1.0,
        },
    ),
    (
        "responses since the last contact",
        [
            (T - 6 * D, "email_click", "email"),
            (T - 5 * D, "email_open", "email"),
            (T - 4 * D, "email_click", "email"),
            (T - D, "ad_click", "social_ad"),
        ],
        [(T - 5 * D, "email")],
        None,
        {"responses_since_last_contact": 2, "days_since_last_contact": 5.0},
    ),
    (
        "unsubscribes in 30 days",
        [(T - 30 * D, "unsubscribe", "email"), (T - 31 * D, "unsubscribe", "sms")],
        [],
        None,
        {"unsubscribes_30d": 1},
    ),
    (
        "research online, buy offline",
        [
            (T - 12 * D, "product_view"),
            (T - 5 * D, "store_purchase", "store", 1.0),
            (T - 20 * D - 7 * D - H, "product_view"),
            (T - 20 * D, "store_purchase", "store", 1.0),
            (T - 40 * D, "store_purchase", "store", 1.0),
        ],
        [],
        None,
        {"robo_purchases_365d": 1, "store_purchases_365d": 3},
    ),
    (
        "view exactly 7 days before the store purchase counts",
        [(T - 17 * D, "product_view"), (T - 10 * D, "store_purchase", "store", 1.0)],
        [],
        None,
        {"robo_purchases_365d": 1},
    ),
    (
        "a simultaneous view does not count",
        [(T - 10 * D, "product_view"), (T - 10 * D, "store_purchase", "store", 1.0)],
        [],
        None,
        {"robo_purchases_365d": 0},
    ),
    (
        "store share",
        [(T - 5 * D, "store_purchase", "store", 1.0)] + [(T - i * D, "purchase", "web", 1.0) for i in (1, 2, 3)],
        [],
        None,
        {"store_purchase_share_365d": 0.25, "online_purchases_365d": 3},
    ),
    (
        "distinct channels",
        [
            (T - D, "page_view", "web"),
            (T - D, "page_view", "app"),
            (T - 2 * D, "store_purchase", "store", 1.0),
            (T - 31 * D, "page_view", "search"),
        ],
        [],
        None,
        {"distinct_channels_30d": 3, "distinct_channels_90d": 4},
    ),
    (
        "last survey score",
        [
            (T - 10 * D, "survey", "email", 7.0),
            (T - 2 * D, "survey", "email", 9.0),
            (T - D, "survey", "email", NAN),
            (T, "survey", "email", 1.0),
        ],
        [],
        None,
        {"last_survey_score": 9.0},
    ),
    (
        "relationship windows",
        [
            (T - 90 * D, "support_ticket"),
            (T - 91 * D, "support_ticket"),
            (T - 365 * D, "review"),
            (T - 366 * D, "referral"),
        ],
        [],
        None,
        {"support_tickets_90d": 1, "reviews_365d": 1, "referrals_365d": 0},
    ),
    (
        "time-decayed activity",
        [(T - 7 * D, "page_view"), (T - 366 * D, "page_view")],
        [],
        None,
        {"activity_score": math.exp(-1)},
    ),
    (
        "last event time",
        [(T - 3 * D, "page_view"), (T + D, "page_view")],
        [],
        None,
        {"last_event_epoch_days": (T - 3 * D).value / 86_400e9},
    ),
]


@pytest.mark.parametrize(("case", "events", "contacts", "signup", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hand_made_cases(
    case: str,
    events: list[tuple[Any, ...]],
    contacts: list[tuple[pd.Timestamp, str]],
    signup: Any,
    expected: dict[str, float],
) -> None:
    row = _one(events, contacts, signup)
    for name, value in expected.items():
        assert name in FEATURE_NAMES
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(row[name]), (case, name, row[name])
        else:
            assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-12), (case, name, row[name])


def test_registry_and_output_schema() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) >= 80
    assert {f.family for f in FEATURES} == set(FAMILIES)
    assert all(f.dtype in ("int", "float") and f.description and f.sources for f in FEATURES)
    out = _one([(T - D, "purchase", "web", 3.0)])
    frame = build_features(_customers(["a"]), _events([(T - D, "page_view")]), pd.DataFrame(), [T])
    assert list(frame.columns) == ["customer_id", "event_timestamp", *FEATURE_NAMES]
    assert str(frame["event_timestamp"].dtype) == "datetime64[us, UTC]"
    for f in FEATURES:
        assert str(frame[f.name].dtype) == ("int64" if f.dtype == "int" else "float64"), f.name
    assert out["customer_id"] == "a"


def test_customers_exist_only_after_arrival() -> None:
    customers = _customers(["early", "late", "signed", "ghost"])
    customers.loc[2, "signup_ts"] = T - D
    events = pd.concat([_events([(T - D, "page_view")], "early"), _events([(T, "page_view")], "late")])
    out = build_features(customers, events, pd.DataFrame(columns=CONTACT_COLUMNS), [T, T + D])
    got = set(zip(out["customer_id"], out["event_timestamp"], strict=True))
    assert got == {("early", T), ("signed", T), ("early", T + D), ("late", T + D), ("signed", T + D)}
    assert list(out["event_timestamp"]) == sorted(out["event_timestamp"])  # sorted by (t, customer)


def _random_world(
    seed: int, n_customers: int = 40, n_events: int = 3000, n_contacts: int = 600
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Hour-resolution timestamps so many events are simultaneous (ties are where prefix sums go wrong)."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(n_customers)]
    start = T - 200 * D
    types = [e.value for e in EventType if e is not EventType.UNSUBSCRIBE]
    ev = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n_events),
            "ts": start + pd.to_timedelta(rng.integers(0, 260 * 24, n_events), unit="h"),
            "event_type": rng.choice(types, n_events),
            "channel": rng.choice(["web", "app", "store", "email", "sms", "social_ad", "search"], n_events),
            "content": None,
            "value": np.round(rng.gamma(2.0, 20.0, n_events), 2),
        }
    )
    ev.loc[rng.random(n_events) < 0.2, "value"] = NAN
    ev["ts"] = ev["ts"].astype("datetime64[us, UTC]")
    ct = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n_contacts)],
            "customer_id": rng.choice(ids, n_contacts),
            "ts": (start + pd.to_timedelta(rng.integers(0, 260 * 24, n_contacts), unit="h")),
            "channel": rng.choice(["email", "sms", "push", "mail", "none"], n_contacts),
            "content": "x",
            "propensity": 0.5,
            "policy": "p",
        }
    )
    ct["ts"] = ct["ts"].astype("datetime64[us, UTC]")
    customers = _customers(ids)
    customers["consent_email"] = rng.random(n_customers) < 0.5
    return customers, ev, ct


def test_no_leakage_from_rows_at_or_after_t() -> None:
    customers, ev, ct = _random_world(1)
    times = snapshot_times(T - 120 * D, T, 14)
    base = build_features(customers, ev, ct, times)
    for t in times:
        rng = np.random.default_rng(int(t.value % 1000))
        future_ev = ev.sample(300, replace=True, random_state=rng)
        future_ev["ts"] = t + pd.to_timedelta(rng.integers(0, 40 * 24, len(future_ev)), unit="h")
        future_ev = pd.concat([future_ev, _events([(t, "purchase", "web", 1e6)], "newcomer"), ev.head(5).assign(ts=t)])
        future_ct = ct.sample(100, replace=True, random_state=1).assign(ts=t)
        more = build_features(customers, pd.concat([ev, future_ev]), pd.concat([ct, future_ct]), [t])
        expected = base[base["event_timestamp"] == t].reset_index(drop=True)
        pd.testing.assert_frame_equal(more.reset_index(drop=True), expected, check_exact=True)


def _oracle(customers: pd.DataFrame, ev: pd.DataFrame, ct: pd.DataFrame, cid: str, t: pd.Timestamp) -> dict[str, float]:
    """Straightforward per-row definitions, to check the prefix-sum machinery."""
    e = ev[(ev["customer_id"] == cid) & (ev["ts"] < t)].sort_values("ts")
    c = ct[(ct["customer_id"] == cid) & (ct["ts"] < t) & (ct["channel"] != "none")]
    buys = e[e["event_type"].isin(["purchase", "store_purchase"])]
    responses = e[
        e["event_type"].isin(
            [
                "email_open",
                "email_click",
                "sms_click",
                "push_open",
                "ad_click",
                "web_click",
                "mail_response",
                "call_answered",
            ]
        )
    ]

    def within(frame: pd.DataFrame, days: int) -> pd.DataFrame:
        return frame[frame["ts"] >= t - days * D]

    last_buy = buys["ts"].max() if len(buys) else None
    views = e[e["event_type"] == "product_view"]
    last_contact = c["ts"].max() if len(c) else None
    robo = sum(
        ((views["ts"] < s) & (views["ts"] >= s - 7 * D)).any()
        for s in within(e[e["event_type"] == "store_purchase"], 365)["ts"]
    )
    last_day = e["ts"].max().floor("D") if len(e) else None
    depth_map = {"product_view": 1, "add_to_cart": 2, "checkout": 3, "purchase": 4}
    return {
        "events_7d": len(within(e, 7)),
        "product_views_30d": len(within(views, 30)),
        "purchases_90d": len(within(buys, 90)),
        "monetary_90d": within(buys, 90)["value"].sum(),
        "monetary_total": buys["value"].sum(),
        "active_days_30d": within(e, 30)["ts"].dt.floor("D").nunique(),
        "contacts_email_30d": int((within(c, 30)["channel"] == "email").sum()),
        "response_rate_sms_90d": (
            len(within(responses[responses["event_type"] == "sms_click"], 90)) / n
            if (n := int((within(c, 90)["channel"] == "sms").sum()))
            else NAN
        ),
        "product_views_since_last_purchase": len(views if last_buy is None else views[views["ts"] > last_buy]),
        "responses_since_last_contact": 0 if last_contact is None else int((responses["ts"] > last_contact).sum()),
        "robo_purchases_365d": robo,
        "funnel_depth_last_session": max([depth_map.get(x, 0) for x in e[e["ts"] >= last_day]["event_type"]], default=0)
        if last_day is not None
        else 0,
        "activity_score": float(np.exp(-(t - within(e, 365)["ts"]).dt.total_seconds() / (7 * 86400)).sum()),
        "distinct_channels_90d": within(e, 90)["channel"].nunique(),
    }


def test_matches_a_brute_force_oracle_with_simultaneous_events() -> None:
    customers, ev, ct = _random_world(7)
    times = [*snapshot_times(T - 90 * D, T, 30), T - 40 * D + 5 * H]  # one t not at midnight
    out = build_features(customers, ev, ct, times)
    assert len(out) > 100
    for row in out.to_dict("records"):
        at = pd.Timestamp(row["event_timestamp"])
        expected = _oracle(customers, ev, ct, str(row["customer_id"]), at)
        for name, value in expected.items():
            got = row[name]
            if name == "active_days_30d" and at.hour:
                continue  # calendar days are exact only for 00:00 snapshots (documented)
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got), (row["customer_id"], at, name)
            else:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (row["customer_id"], at, name)


def test_bare_transaction_log() -> None:
    """Only purchases, no customers attributes, no contacts table at all: features still come out."""
    log = pd.concat(
        [
            _events([(T - 3 * D, "purchase", "web", 20.0), (T - 40 * D, "store_purchase", "store", 80.0)], "x"),
            _events([(T - D, "store_purchase", "store", 5.0)], "y"),
        ]
    )[["customer_id", "ts", "event_type", "channel", "value"]]
    out = build_features(pd.DataFrame({"customer_id": ["x", "y"]}), log, pd.DataFrame(), [T])
    assert list(out["customer_id"]) == ["x", "y"]
    x = out.iloc[0]
    assert (x["purchases_90d"], x["monetary_90d"], x["store_purchase_share_365d"]) == (2, 100.0, 0.5)
    assert x["contacts_30d"] == 0 and x["responses_since_last_contact"] == 0
    assert math.isnan(x["days_since_last_contact"]) and math.isnan(x["response_rate_email_90d"])
    assert x["consent_count"] == 0 and x["is_identified"] == 0
    assert not any(out[c].dtype == object for c in FEATURE_NAMES)


def test_empty_inputs() -> None:
    out = build_features(
        pd.DataFrame(columns=["customer_id"]), pd.DataFrame(columns=EVENT_COLUMNS), pd.DataFrame(), [T]
    )
    assert out.empty and list(out.columns) == ["customer_id", "event_timestamp", *FEATURE_NAMES]
    assert build_features(_customers(["a"]), _events([(T - D, "page_view")]), pd.DataFrame(), []).empty


def test_consent_is_reconstructed_point_in_time() -> None:
    customers = _customers(["gone", "kept", "never", "same_time"], consent_call=True)
    customers["consent_call"] = [False, True, False, False]
    events = pd.concat(
        [
            _events([(T - 50 * D, "page_view"), (T + 5 * D, "unsubscribe", "call")], "gone"),
            _events([(T - 50 * D, "page_view"), (T - 5 * D, "unsubscribe", "call")], "kept"),
            _events([(T - 50 * D, "page_view"), (T - 5 * D, "unsubscribe", "call")], "never"),
            _events([(T - 50 * D, "page_view"), (T, "unsubscribe", "social_ad")], "same_time"),
        ]
    )
    customers.loc[3, "consent_ads"] = False
    out = build_features(customers, events, pd.DataFrame(), [T, T + 6 * D]).set_index(
        ["customer_id", "event_timestamp"]
    )
    assert out.loc[("gone", T), "consent_call"] == 1  # unsubscribed after t: still consented at t
    assert out.loc[("gone", T + 6 * D), "consent_call"] == 0
    assert out.loc[("kept", T), "consent_call"] == 1  # consent today wins
    assert out.loc[("never", T), "consent_call"] == 0
    assert out.loc[("same_time", T), "consent_ads"] == 1  # an unsubscribe at t is "at or after t"
    assert out.loc[("same_time", T + 6 * D), "consent_ads"] == 0
    assert out.loc[("gone", T), "consent_count"] == 1


def test_snapshot_times() -> None:
    times = snapshot_times(pd.Timestamp("2024-01-01 10:00", tz="UTC"), pd.Timestamp("2024-01-29", tz="UTC"), 7)
    assert times[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert times[-1] == pd.Timestamp("2024-01-23", tz="UTC") and len(times) == 4
    assert snapshot_times(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-15"), 7)[-1] == pd.Timestamp(
        "2024-01-15", tz="UTC"
    )
    with pytest.raises(ValueError):
        snapshot_times(T, T, 0)


def test_request_features_measure_from_the_request_time() -> None:
    snap = build_features(_customers(["a"]), _events([(T - 3 * D, "purchase", "web", 1.0)]), pd.DataFrame(), [T])
    at = T + 2 * D + 6 * H  # Sunday 06:00, two days after the Friday snapshot
    out = add_request_features(snap, at)
    assert set(REQUEST_FEATURE_NAMES) <= set(out.columns) and "days_since_last_event" not in snap
    assert out.loc[0, "days_since_last_event"] == pytest.approx(5.25)
    assert out.loc[0, "days_since_last_purchase"] == pytest.approx(5.25)
    assert out["days_since_last_contact"].isna().all()
    assert (out.loc[0, "hour_of_day"], out.loc[0, "day_of_week"]) == (6.0, 6.0)
    per_row = add_request_features(snap, pd.Series([at + D]))
    assert per_row.loc[0, "days_since_last_event"] == pytest.approx(6.25)


def test_catalog_lists_every_feature_and_is_up_to_date() -> None:
    text = render()
    for f in FEATURES:
        assert f"| `{f.name}` |" in text
    for family in FAMILIES:
        assert f"## {family}" in text
    assert DEFAULT_PATH.read_text() == text, "run `python -m features.catalog_doc`"


def test_snapshot_plan_is_the_grid_plus_the_end() -> None:
    from features.build import snapshot_plan

    plan = snapshot_plan(pd.Timestamp("2026-01-01 13:00", tz="UTC"), pd.Timestamp("2026-01-20", tz="UTC"), 7)
    days = [str(t.date()) for t in plan]
    assert days == ["2026-01-01", "2026-01-08", "2026-01-15", "2026-01-20"]  # from the first day; end added
    on_grid = snapshot_plan(pd.Timestamp("2026-01-02", tz="UTC"), pd.Timestamp("2026-01-16", tz="UTC"), 7)
    assert [str(t.date()) for t in on_grid] == ["2026-01-02", "2026-01-09", "2026-01-16"]


def _daily(start: str, days: int, count: int = 100, every: str = "D") -> pd.Series:
    return pd.Series(count, index=pd.date_range(start, periods=days, freq=every, tz="UTC"))


def test_history_start_is_the_first_day_of_a_log_dense_from_the_start() -> None:
    from features.build import history_start

    assert history_start(_daily("2024-01-01", 120), 7) == pd.Timestamp("2024-01-01", tz="UTC")
    assert history_start(pd.Series(dtype="int64"), 7) is None


def test_history_start_skips_an_imported_order_history() -> None:
    """Years of sparse old orders before the behavioural log: snapshots start with the dense part."""
    from features.build import history_start

    orders = _daily("2021-01-01", 35, count=2, every="30D")  # ~3 years, 2 orders a month
    start = history_start(pd.concat([orders, _daily("2024-01-01", 120)]), 7)
    assert start is not None
    assert pd.Timestamp("2023-12-25", tz="UTC") <= start <= pd.Timestamp("2024-01-01", tz="UTC")


def test_history_start_ignores_a_one_off_spike() -> None:
    from features.build import history_start

    counts = _daily("2024-01-01", 120)
    counts.iloc[60] = 20 * 100  # a Black Friday 20 times a normal day
    assert history_start(counts, 7) == pd.Timestamp("2024-01-01", tz="UTC")


def test_history_start_sums_counts_given_in_parts() -> None:
    """Buckets of a distributed build report events per day; summed, they give the single-machine answer."""
    from features.build import event_days, history_start

    dense = pd.date_range("2024-01-01", periods=60, freq="6h", tz="UTC")
    ts = pd.Series([pd.Timestamp("2022-03-01", tz="UTC"), *dense])
    whole = history_start(event_days(ts), 7)
    parts = pd.concat([event_days(ts.iloc[::2]), event_days(ts.iloc[1::2])])
    assert history_start(parts, 7) == whole
    assert whole is not None and whole > pd.Timestamp("2023-12-20", tz="UTC")
