"""The hand-written journey playbook: the rules a CRM marketer writes today, used as the baseline NBA must beat.

One rule per situation a marketer can see in their tools (no model, no latent phase): an abandoned cart gets a
cart reminder, a recent buyer a review request, a silent buyer a win-back offer, a browsing prospect a product
recommendation, an identified prospect an educational guide, an anonymous visitor a sign-up invitation. Rules
are tried in order; the first that matches names a content and its channels in order of preference, and the
first channel the caller allows (consent, caps…) is used. Pure: plain values in, an action out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from journey.catalog import NO_ACTION, Action, Catalog

RECENT_PURCHASE_DAYS = 30
DORMANT_AFTER_DAYS = 45
BROWSING_VIEWS_7D = 2


@dataclass(frozen=True)
class Signals:
    """What a marketer's CRM shows about one customer now (None = unknown / never)."""

    identified: bool
    cart_abandoned: bool
    days_since_purchase: float | None
    days_since_last_event: float | None
    product_views_7d: int = 0

    @property
    def has_purchased(self) -> bool:
        return self.days_since_purchase is not None


@dataclass(frozen=True)
class PlaybookRule:
    name: str
    applies: Callable[[Signals], bool]
    content: str
    channels: tuple[str, ...]  # in order of preference


def _dormant(s: Signals) -> bool:
    return s.days_since_last_event is not None and s.days_since_last_event >= DORMANT_AFTER_DAYS


def _recent_buyer(s: Signals) -> bool:
    return s.days_since_purchase is not None and s.days_since_purchase <= RECENT_PURCHASE_DAYS


PLAYBOOK: tuple[PlaybookRule, ...] = (
    PlaybookRule("cart abandoned", lambda s: s.cart_abandoned, "cart_reminder", ("email", "push", "sms", "web")),
    PlaybookRule("dormant", lambda s: s.identified and _dormant(s), "win_back_offer", ("email", "sms")),
    PlaybookRule("recent purchase", lambda s: s.identified and _recent_buyer(s), "review_request", ("email", "push")),
    PlaybookRule(
        "browsing",
        lambda s: s.identified and s.product_views_7d >= BROWSING_VIEWS_7D,
        "product_recommendation",
        ("email", "push", "web"),
    ),
    PlaybookRule("buyer", lambda s: s.identified and s.has_purchased, "loyalty_offer", ("email", "push")),
    PlaybookRule("identified prospect", lambda s: s.identified, "educational_guide", ("email", "web")),
    PlaybookRule("anonymous visitor", lambda s: not s.identified, "signup_invitation", ("web", "social_ad")),
)


def playbook_rule(signals: Signals, rules: tuple[PlaybookRule, ...] = PLAYBOOK) -> PlaybookRule | None:
    """The first rule that matches, or None."""
    return next((rule for rule in rules if rule.applies(signals)), None)


def playbook_action(
    signals: Signals,
    catalog: Catalog,
    allowed: Callable[[Action], bool],
    rules: tuple[PlaybookRule, ...] = PLAYBOOK,
) -> tuple[Action, str]:
    """(action, why): the matching rule's content on its first allowed catalog channel, else no contact."""
    rule = playbook_rule(signals, rules)
    if rule is None:
        return NO_ACTION, "no rule matches"
    spec = catalog.contents.get(rule.content)
    if spec is None:
        return NO_ACTION, f"{rule.name}: {rule.content} is not in the catalog"
    for channel in rule.channels:
        action = Action(channel, rule.content)
        if channel in spec.channels and allowed(action):
            return action, rule.name
    return NO_ACTION, f"{rule.name}: no allowed channel among {', '.join(rule.channels)}"
