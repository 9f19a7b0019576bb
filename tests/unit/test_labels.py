"""Labels on hand-made timelines, with the exact expected value at every window boundary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from journey.catalog import load_catalog
from training.labels import (
    LABELS_VERSION,
    churn_labels,
    phase_labels,
    purchase_labels,
    response_dataset,
    true_phase_at,
)

T0 = pd.Timestamp("2024-03-01", tz="UTC")
US = pd.Timedelta(microseconds=1)


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


def events(*rows: tuple) -> pd.DataFrame:
    """rows: (customer_id, ts, event_type[, value[, channel]])."""
    records = []
    for row in rows:
        cid, ts, kind, *rest = row
        value = rest[0] if rest else np.nan
        channel = rest[1] if len(rest) > 1 else "web"
        records.append({"customer_id": cid, "ts": ts, "event_type": kind, "channel": channel, "value": value})
    frame = pd.DataFrame(records, columns=["customer_id", "ts", "event_type", "channel", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("us")
    frame["content"] = None
    frame["value"] = frame["value"].astype("float64")
    return frame


def cutoffs(*rows: tuple[str, pd.Timestamp], index: list[int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "event_timestamp"], index=index)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).dt.as_unit("us")
    return frame


def customers(**signups: pd.Timestamp | None) -> pd.DataFrame:
    frame = pd.DataFrame({"customer_id": list(signups), "signup_ts": list(signups.values())})
    frame["signup_ts"] = pd.to_datetime(frame["signup_ts"], utc=True).dt.as_unit("us")
    return frame


def test_labels_version_is_declared() -> None:
    assert LABELS_VERSION == 2


# ---------------------------------------------------------------------------------------------------- purchase


def test_purchase_window_is_closed_at_t_and_open_at_horizon() -> None:
    ev = events(
        ("at_t", T0, "purchase"),
        ("at_h", day(30), "purchase"),
        ("before_h", day(30) - US, "store_purchase"),
        ("before_t", T0 - US, "purchase"),
        ("browse", day(1), "product_view"),
        ("browse", day(2), "checkout"),
    )
    cut = cutoffs(("at_t", T0), ("at_h", T0), ("before_h", T0), ("before_t", T0), ("browse", T0), ("unknown", T0))
    assert purchase_labels(ev, cut, 30).tolist() == [1, 0, 1, 0, 0, 0]


def test_purchase_labels_follow_each_cutoff_and_keep_the_index() -> None:
    ev = events(("a", day(10), "purchase"), ("b", day(10), "purchase"))
    cut = cutoffs(("a", T0), ("a", day(10)), ("a", day(11)), ("b", day(-30)), index=[7, 3, 9, 1])
    labels = purchase_labels(ev, cut, 30)
    assert labels.index.tolist() == [7, 3, 9, 1]
    assert labels.tolist() == [1, 1, 0, 0]


def test_purchase_labels_on_empty_events() -> None:
    assert purchase_labels(events(), cutoffs(("a", T0)), 30).tolist() == [0]


# ---------------------------------------------------------------------------------------------------- churn


def test_churn_eligibility_window_is_closed_at_start_and_open_at_t() -> None:
    ev = events(
        ("start", day(-90), "page_view"),
        ("too_old", day(-90) - US, "page_view"),
        ("at_t_only", T0, "page_view"),
    )
    out = churn_labels(ev, cutoffs(("start", T0), ("too_old", T0), ("at_t_only", T0)), 60, 90)
    assert out["eligible"].tolist() == [True, False, False]
    assert out["label"].tolist() == [1, 0, 0]


@pytest.mark.parametrize(
    ("future", "expected"),
    [
        ((T0, "page_view"), 0),  # at t: inside the horizon, still active
        ((day(60) - US, "email_click"), 0),  # last instant of the horizon
        ((day(60), "purchase"), 1),  # at t+h: outside
        ((day(5), "store_purchase"), 0),
        ((day(5), "product_view"), 0),
        ((day(5), "push_open"), 0),
        ((day(5), "support_ticket"), 1),  # a complaint is not engagement
        ((day(5), "unsubscribe"), 1),
        ((day(5), "add_to_cart"), 0),  # shopping is activity
        ((day(5), "review"), 1),  # not in the activity list: views, funnel steps, purchases, responses
    ],
)
def test_churn_label_counts_only_engagement_in_the_horizon(future: tuple, expected: int) -> None:
    ts, kind = future
    ev = events(("a", day(-10), "purchase"), ("a", ts, kind))
    out = churn_labels(ev, cutoffs(("a", T0)), 60, 90)
    assert out["eligible"].tolist() == [True]
    assert out["label"].tolist() == [expected]


def test_churn_rows_align_with_cutoffs_index() -> None:
    ev = events(("a", day(-1), "page_view"))
    out = churn_labels(ev, cutoffs(("b", T0), ("a", T0), index=[5, 2]), 60, 90)
    assert out.index.tolist() == [5, 2]
    assert out.to_dict("list") == {"eligible": [False, True], "label": [0, 1]}


# ---------------------------------------------------------------------------------------------------- phase


KNOWN = customers(a=day(-400))


def phase_of(*rows: tuple, who: pd.DataFrame = KNOWN) -> str:
    return phase_labels(who, events(*rows), cutoffs(("a", T0))).tolist()[0]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], "discovery"),
        ([("a", T0, "checkout")], "purchase"),
        ([("a", day(14) - US, "store_purchase")], "purchase"),
        ([("a", day(14), "purchase")], "discovery"),  # outside [t, t+14d), and not in the past 90 days
        ([("a", day(-90), "purchase")], "service"),
        ([("a", day(-90) - US, "purchase")], "discovery"),
        ([("a", day(-100), "purchase"), ("a", day(-30), "review")], "advocacy"),
        ([("a", day(-100), "purchase"), ("a", day(30), "referral")], "discovery"),  # t+30d is outside
        ([("a", day(-100), "purchase"), ("a", day(29), "survey", 9.0)], "advocacy"),
        ([("a", day(-10), "purchase"), ("a", day(1), "survey", 8.0)], "service"),  # a passive score
        ([("a", day(-100), "purchase"), ("a", day(-30), "review", 4.0)], "service"),  # not a top rating
        ([("a", day(-10), "purchase"), ("a", day(-5), "review", 4.0)], "service"),
        ([("a", day(-10), "purchase"), ("a", day(-5), "review", 5.0)], "advocacy"),
        # after-sales contacts mark a customer whose purchases predate the log
        ([("a", day(-30), "review", 5.0)], "advocacy"),
        ([("a", day(-30), "review", 2.0)], "service"),
        ([("a", day(-90), "support_ticket")], "service"),
        ([("a", day(-90) - US, "support_ticket")], "discovery"),
        ([("a", day(-200), "support_ticket"), ("a", day(10), "referral")], "advocacy"),
        ([("a", day(29), "survey", 5.0)], "service"),  # surveyed soon after t: already a customer at t
        ([("a", day(30), "survey", 5.0)], "discovery"),
        ([("a", day(20), "purchase"), ("a", day(29), "support_ticket")], "discovery"),  # explained by the purchase
        ([("a", day(20), "purchase"), ("a", day(25), "review")], "discovery"),  # not a buyer yet at t
        ([("a", T0 - US, "purchase"), ("a", day(29), "review")], "advocacy"),
        ([("a", T0, "purchase"), ("a", day(1), "review")], "purchase"),
        ([("a", day(-14), "product_view"), ("a", day(14) - US, "product_view")], "consideration"),
        ([("a", day(-14) - US, "product_view"), ("a", day(1), "product_view")], "discovery"),
        ([("a", day(-3), "add_to_cart")], "consideration"),
        ([("a", day(-3), "product_view")], "discovery"),  # light research
    ],
)
def test_phase_rules_and_boundaries(rows: list[tuple], expected: str) -> None:
    assert phase_of(*rows) == expected


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # purchase > advocacy > service > consideration > discovery
        ([("a", day(-10), "purchase"), ("a", day(-5), "review"), ("a", day(3), "purchase")], "purchase"),
        ([("a", day(-10), "purchase"), ("a", day(-5), "review")], "advocacy"),
        ([("a", day(-10), "purchase"), ("a", day(-2), "add_to_cart")], "service"),
        ([("a", day(-2), "add_to_cart"), ("a", day(3), "checkout")], "purchase"),
    ],
)
def test_phase_precedence(rows: list[tuple], expected: str) -> None:
    assert phase_of(*rows) == expected


def test_anonymous_researcher_needs_more_views_than_an_identified_one() -> None:
    research = [("a", day(-2), "product_view"), ("a", day(-1), "product_view")]
    assert phase_of(*research, who=customers(a=None)) == "discovery"
    assert phase_of(*research, who=customers(a=day(14) - US)) == "consideration"  # signs up during research
    assert phase_of(*research, who=customers(a=day(14))) == "discovery"
    assert phase_of(*research, ("a", day(2), "signup"), who=customers()) == "consideration"
    # sustained research counts without an identity
    views = [("a", day(k), "product_view") for k in (-13, -6, 1, 13)]
    assert phase_of(*views, who=customers(a=None)) == "consideration"
    assert phase_of(*views[:3], who=customers(a=None)) == "discovery"
    assert phase_of(("a", day(-3), "add_to_cart"), who=customers(a=None)) == "consideration"
    # a guest checkout is still a purchase
    assert phase_of(("a", day(1), "checkout"), who=customers(a=None)) == "purchase"


def test_phase_labels_vary_by_cutoff() -> None:
    ev = events(("a", day(10), "purchase"))
    cut = cutoffs(("a", T0), ("a", day(11)), ("a", day(101)), index=[2, 1, 0])
    labels = phase_labels(KNOWN, ev, cut)
    assert labels.index.tolist() == [2, 1, 0]
    assert labels.tolist() == ["purchase", "service", "discovery"]


def test_true_phase_at_takes_the_last_change_at_or_before_t() -> None:
    history = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "ts": pd.to_datetime([day(-5), T0, day(1)], utc=True),
            "phase": ["discovery", "consideration", "purchase"],
        }
    )
    cut = cutoffs(("a", T0 - US), ("a", T0), ("b", T0), ("b", day(2)))
    assert true_phase_at(history, cut).tolist() == ["discovery", "consideration", None, "purchase"]


# ---------------------------------------------------------------------------------------------------- response

CATALOG = load_catalog()


def contacts(*rows: tuple) -> pd.DataFrame:
    """rows: (decision_id, customer_id, ts, channel, content, propensity)."""
    frame = pd.DataFrame(rows, columns=["decision_id", "customer_id", "ts", "channel", "content", "propensity"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("us")
    frame["policy"] = "test"
    return frame


def treated_label(channel: str, content: str, *rows: tuple) -> tuple[int, float]:
    out = response_dataset(contacts(("d", "a", T0, channel, content, 0.5)), events(*rows), CATALOG, 7)
    assert len(out) == 1
    return int(out["label"].iloc[0]), float(out["value_observed"].iloc[0])


def test_conversion_window_is_open_at_contact_and_closed_at_window_end() -> None:
    assert treated_label("email", "product_recommendation", ("a", T0, "purchase", 50.0)) == (0, 0.0)
    assert treated_label("email", "product_recommendation", ("a", day(7), "store_purchase", 40.0)) == (1, 40.0)
    assert treated_label("email", "product_recommendation", ("a", day(7) + US, "purchase", 40.0)) == (0, 0.0)
    both = [("a", day(1), "purchase", 10.0), ("a", day(2), "store_purchase", 15.0)]
    assert treated_label("sms", "time_limited_discount", *both) == (1, 25.0)


@pytest.mark.parametrize(
    ("channel", "content", "event", "expected"),
    [
        ("email", "educational_guide", ("a", day(1), "email_open", np.nan, "email"), 1),
        ("email", "educational_guide", ("a", day(1), "sms_click", np.nan, "sms"), 0),  # other channel
        ("web", "educational_guide", ("a", day(1), "product_view"), 1),
        ("email", "educational_guide", ("a", day(1), "purchase", 5.0), 0),
        ("web", "signup_invitation", ("a", day(1), "signup"), 1),
        ("email", "referral_invitation", ("a", day(1), "referral"), 1),
        ("push", "referral_invitation", ("a", day(1), "push_open", np.nan, "push"), 1),
        ("push", "referral_invitation", ("a", day(1), "product_view"), 0),
        ("email", "satisfaction_survey", ("a", day(1), "survey", 7.0), 1),
        ("push", "review_request", ("a", day(1), "review"), 1),
        ("push", "review_request", ("a", day(1), "push_open", np.nan, "push"), 0),
    ],
)
def test_treated_goal_by_objective(channel: str, content: str, event: tuple, expected: int) -> None:
    label, value = treated_label(channel, content, event)
    assert label == expected
    assert np.isnan(value)  # value_observed is only for conversion contents


def test_controls_expand_per_content_and_label_goals_reached_anyway() -> None:
    ev = events(
        ("a", day(1), "web_click", np.nan, "web"),
        ("a", day(2), "sms_click", np.nan, "sms"),
        ("b", day(1), "store_purchase", 80.0, "store"),
        ("b", day(3), "survey", 10.0, "email"),
    )
    log = contacts(
        ("d1", "a", T0, "none", "none", 0.9),
        ("d2", "b", day(-1), "none", "none", 0.8),
        ("d3", "a", day(-2), "email", "cart_reminder", 0.1),
    )
    out = response_dataset(log, ev, CATALOG, 7)
    contents = list(CATALOG.contents)
    assert out["decision_id"].tolist() == ["d3"] + ["d2"] * len(contents) + ["d1"] * len(contents)
    controls = out.loc[out["action_channel"] == "none"]
    for decision, propensity in [("d1", 0.9), ("d2", 0.8)]:
        rows = controls.loc[controls["decision_id"] == decision]
        assert rows["action_content"].tolist() == contents
        assert (rows["propensity"] == propensity).all()
    d1 = controls.loc[controls["decision_id"] == "d1"].set_index("action_content")["label"].to_dict()
    # untagged responses: a web click counts for the contents that can go on web; an sms click only for sms
    # contents (none of which has a response goal); nothing is bought or answered.
    assert {k for k, v in d1.items() if v} == {
        "educational_guide",
        "comparison_reviews",
        "onboarding_tips",
        "referral_invitation",
        "signup_invitation",
    }
    d2 = controls.loc[controls["decision_id"] == "d2"].set_index("action_content")
    conversion = [k for k, s in CATALOG.contents.items() if s.objective == "conversion"]
    knowledge = [k for k, s in CATALOG.contents.items() if s.objective == "knowledge"]
    assert {k for k, v in d2["label"].items() if v} == set(conversion) | set(knowledge)
    assert d2.loc[conversion, "value_observed"].tolist() == [80.0] * len(conversion)
    assert d2.drop(index=conversion)["value_observed"].isna().all()
    treated = out.loc[out["decision_id"] == "d3"].iloc[0]
    assert (treated["action_channel"], treated["action_content"], treated["label"]) == ("email", "cart_reminder", 0)


def test_tagged_responses_count_for_their_content_only_in_both_arms() -> None:
    ev = events(
        ("a", day(1), "email_open", np.nan, "email"),
        ("a", day(2), "web_click", np.nan, "web"),
        ("b", day(1), "web_click", np.nan, "web"),
    )
    ev["content"] = ["loyalty_offer", "comparison_reviews", "signup_invitation"]
    log = contacts(
        ("d1", "a", T0, "email", "educational_guide", 0.5),
        ("d2", "a", T0, "email", "comparison_reviews", 0.5),
        ("d3", "b", T0, "none", "none", 0.5),
    )
    out = response_dataset(log, ev, CATALOG, 7).set_index(["decision_id", "action_content"])["label"]
    assert out["d1", "educational_guide"] == 0  # the open answered another content
    assert out["d2", "comparison_reviews"] == 1  # a response to this content, whatever its channel
    assert out["d3", "signup_invitation"] == 1
    assert out["d3", "educational_guide"] == 0  # a web click tagged for another content
    assert out["d3", "comparison_reviews"] == 0


def test_unknown_actions_are_dropped_and_columns_are_stable() -> None:
    log = contacts(
        ("d1", "a", T0, "fax", "product_recommendation", 0.5),
        ("d2", "a", T0, "email", "mystery", 0.5),
        ("d3", "a", T0, "email", "onboarding_tips", np.nan),
    )
    out = response_dataset(log, events(), CATALOG, 7)
    assert out.columns.tolist() == [
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
    ]
    assert out["decision_id"].tolist() == ["d3"]
    assert str(out["event_timestamp"].dtype) == "datetime64[us, UTC]"
    empty = response_dataset(log.iloc[:0], events(), CATALOG, 7)
    assert empty.columns.tolist() == out.columns.tolist() and empty.empty


def test_responded_marks_the_contacts_that_were_answered() -> None:
    log = contacts(
        ("d1", "a", T0, "email", "educational_guide", 0.5),
        ("d2", "b", T0, "email", "educational_guide", 0.5),
        ("d3", "c", T0, "none", "none", 0.5),
    )
    ev = events(("a", day(1), "email_open", np.nan, "email"), ("c", day(1), "email_open", np.nan, "email"))
    ev["content"] = ["educational_guide", "educational_guide"]
    out = response_dataset(log, ev, CATALOG, 7).set_index(["decision_id", "action_content"])["responded"]
    assert out["d1", "educational_guide"] == 1
    assert out["d2", "educational_guide"] == 0
    assert (out.loc["d3"] == 0).all()  # nothing was sent: nothing to answer


def test_unsubscribed_marks_contacts_followed_by_an_opt_out_of_their_channel() -> None:
    log = contacts(
        ("d1", "a", T0, "email", "educational_guide", 0.5),
        ("d2", "b", T0, "sms", "cart_reminder", 0.5),
        ("d3", "c", T0, "email", "educational_guide", 0.5),
    )
    ev = events(("a", day(1), "unsubscribe", np.nan, "email"), ("b", day(1), "unsubscribe", np.nan, "email"))
    ev = pd.concat([ev, events(("c", day(9), "unsubscribe", np.nan, "email"))], ignore_index=True)
    out = response_dataset(log, ev, CATALOG, 7).set_index("decision_id")["unsubscribed"]
    assert out["d1"] == 1
    assert out["d2"] == 0  # an e-mail opt-out after an SMS
    assert out["d3"] == 0  # after the window
