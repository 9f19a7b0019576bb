"""The marketer's playbook: one rule per visible situation, first allowed channel, else no contact."""

from __future__ import annotations

from journey.catalog import NO_ACTION, Action, load_catalog
from journey.playbook import Signals, playbook_action, playbook_rule

CATALOG = load_catalog()


def signals(**kw: object) -> Signals:
    base: dict[str, object] = {
        "identified": True,
        "cart_abandoned": False,
        "days_since_purchase": None,
        "days_since_last_event": 2.0,
        "product_views_7d": 0,
    }
    return Signals(**{**base, **kw})  # type: ignore[arg-type]


def anything(action: Action) -> bool:
    return True


def test_each_situation_gets_its_content() -> None:
    cases = {
        "cart_reminder": signals(cart_abandoned=True, days_since_purchase=3.0),
        "win_back_offer": signals(days_since_purchase=200.0, days_since_last_event=90.0),
        "review_request": signals(days_since_purchase=5.0),
        "product_recommendation": signals(product_views_7d=4),
        "loyalty_offer": signals(days_since_purchase=120.0),
        "educational_guide": signals(),
        "signup_invitation": signals(identified=False),
    }
    for content, s in cases.items():
        action, why = playbook_action(s, CATALOG, anything)
        assert action.content == content, (content, why)


def test_the_cart_wins_over_everything_and_email_is_preferred() -> None:
    s = signals(cart_abandoned=True, identified=False, days_since_last_event=100.0)
    assert playbook_action(s, CATALOG, anything)[0] == Action("email", "cart_reminder")
    assert playbook_rule(s) is not None and playbook_rule(s).name == "cart abandoned"  # type: ignore[union-attr]


def test_falls_back_to_the_next_allowed_channel_then_to_no_contact() -> None:
    s = signals(days_since_purchase=5.0)  # review request: email, then push
    no_email = playbook_action(s, CATALOG, lambda a: a.channel != "email")
    assert no_email[0] == Action("push", "review_request")
    nothing, why = playbook_action(s, CATALOG, lambda a: False)
    assert nothing == NO_ACTION and "no allowed channel" in why


def test_an_anonymous_visitor_never_gets_email() -> None:
    action, _ = playbook_action(signals(identified=False), CATALOG, lambda a: a.channel != "web")
    assert action == Action("social_ad", "signup_invitation")
