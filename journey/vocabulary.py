"""The words of the customer-journey domain, fixed once so every floor spells them the same way.

`../shared/domain.md` explains them; the default action catalog adds channel costs and contents on top.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where a customer stands in the journey; ordered from first contact to recommending the brand."""

    DISCOVERY = "discovery"
    CONSIDERATION = "consideration"
    PURCHASE = "purchase"
    SERVICE = "service"
    ADVOCACY = "advocacy"


PHASES: tuple[Phase, ...] = tuple(Phase)


class Objective(StrEnum):
    """The one benefit a contact is designed for (the "4 C")."""

    CONVERSION = "conversion"
    CONNECTION = "connection"
    CONSIDERATION = "consideration"
    KNOWLEDGE = "knowledge"


class Channel(StrEnum):
    """Channels the engine can decide on; NONE ("no contact") is always a valid decision."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    WEB = "web"
    SOCIAL_AD = "social_ad"
    MAIL = "mail"
    CALL = "call"
    NONE = "none"


NO_CONTACT = Channel.NONE.value
NO_CONTENT = "none"

# The consent column each channel needs; channels absent here need none (on-site content, no contact).
CONSENT_COLUMNS: dict[str, str] = {
    Channel.EMAIL: "consent_email",
    Channel.SMS: "consent_sms",
    Channel.PUSH: "consent_push",
    Channel.MAIL: "consent_mail",
    Channel.CALL: "consent_call",
    Channel.SOCIAL_AD: "consent_ads",
}
CONSENT_FIELDS: tuple[str, ...] = tuple(sorted(set(CONSENT_COLUMNS.values())))


class EventType(StrEnum):
    """Closed vocabulary of behavioural events in the `events` table."""

    PAGE_VIEW = "page_view"
    PRODUCT_VIEW = "product_view"
    ADD_TO_CART = "add_to_cart"
    CHECKOUT = "checkout"
    PURCHASE = "purchase"
    STORE_PURCHASE = "store_purchase"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    SMS_CLICK = "sms_click"
    PUSH_OPEN = "push_open"
    AD_CLICK = "ad_click"
    WEB_CLICK = "web_click"
    MAIL_RESPONSE = "mail_response"
    CALL_ANSWERED = "call_answered"
    SUPPORT_TICKET = "support_ticket"
    SURVEY = "survey"
    REVIEW = "review"
    REFERRAL = "referral"
    SIGNUP = "signup"
    UNSUBSCRIBE = "unsubscribe"


# Where an event happened: the decision channels (minus "none") plus the owned touchpoints.
EVENT_CHANNELS: frozenset[str] = frozenset(
    {c.value for c in Channel if c is not Channel.NONE} | {"app", "store", "search", "other"}
)

# Funnel steps in order; depth is the index + 1 (0 = no funnel activity).
FUNNEL_STEPS: tuple[EventType, ...] = (
    EventType.PRODUCT_VIEW,
    EventType.ADD_TO_CART,
    EventType.CHECKOUT,
    EventType.PURCHASE,
)
PURCHASE_EVENTS: frozenset[str] = frozenset({EventType.PURCHASE, EventType.STORE_PURCHASE})

# The event that counts as a response to a contact on each channel (opens are weaker than clicks).
RESPONSE_EVENTS: dict[str, frozenset[str]] = {
    Channel.EMAIL: frozenset({EventType.EMAIL_OPEN, EventType.EMAIL_CLICK}),
    Channel.SMS: frozenset({EventType.SMS_CLICK}),
    Channel.PUSH: frozenset({EventType.PUSH_OPEN}),
    Channel.WEB: frozenset({EventType.WEB_CLICK}),
    Channel.SOCIAL_AD: frozenset({EventType.AD_CLICK}),
    Channel.MAIL: frozenset({EventType.MAIL_RESPONSE}),
    Channel.CALL: frozenset({EventType.CALL_ANSWERED}),
}
ENGAGEMENT_EVENTS: frozenset[str] = frozenset().union(*RESPONSE_EVENTS.values())
