"""Simulation knobs and the latent journey states.

Rates are per day and, where they vary by journey state, tuples over the six live states
(discovery, consideration, purchase, service, advocacy, dormant); churned customers do nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import pandas as pd

from journey.vocabulary import PHASES

# Latent states: the five phases, then the two drift-out states. Codes are the indices.
STATE_NAMES: tuple[str, ...] = (*(p.value for p in PHASES), "dormant", "churned")
DISCOVERY, CONSIDERATION, PURCHASE, SERVICE, ADVOCACY, DORMANT, CHURNED = range(7)
LIVE_STATES = 6  # every state but churned
NOT_ARRIVED = -1

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000

_DEFAULT_CONSENTS = MappingProxyType(
    {
        "consent_email": 0.75,
        "consent_sms": 0.35,
        "consent_push": 0.55,  # of app users only
        "consent_mail": 0.45,
        "consent_call": 0.15,
        "consent_ads": 0.50,
    }
)


def per_state(values: tuple[float, ...]) -> npt.NDArray[np.float64]:
    """A per-live-state tuple as an array indexable by any state code (churned → 0)."""
    if len(values) != LIVE_STATES:
        raise ValueError(f"expected {LIVE_STATES} values (one per live state), got {len(values)}")
    return np.array([*values, 0.0], dtype=np.float64)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that shapes a simulated population; the same config always gives the same data."""

    customers: int = 20_000
    days: int = 180
    seed: int = 42
    start: pd.Timestamp | None = None  # None: the window ends today 00:00 UTC, so demo data is recent
    decision_every_days: int = 7
    none_share: float = 0.3
    response_window_days: int = 7

    # Population: share already known at the start (the rest arrive uniformly) and their state mix.
    initial_share: float = 0.45
    initial_mix: tuple[float, ...] = (0.30, 0.12, 0.05, 0.33, 0.10, 0.10)
    new_arrival_consideration: float = 0.2  # new visitors who arrive already comparing offers
    # Known buyers' orders before the window written into the log, as a CRM's order history would show them. Off by
    # default: every figure in docs/ was measured on a log that starts empty, where those buyers look like prospects
    # until they buy again; docs/policy-evaluation.md ("Sixth session") measures what turning it on changes.
    log_prior_purchases: bool = False
    prior_purchase_gap_days: float = 60.0  # mean gap between two of a known buyer's earlier orders

    # Sessions and funnel.
    visit_rate: tuple[float, ...] = (0.06, 0.20, 0.40, 0.04, 0.06, 0.008)
    views_per_visit: tuple[float, ...] = (0.6, 1.8, 2.2, 0.5, 0.6, 0.5)
    add_to_cart_rate: tuple[float, ...] = (0.02, 0.10, 0.40, 0.06, 0.08, 0.05)
    checkout_rate: tuple[float, ...] = (0.30, 0.45, 0.75, 0.60, 0.60, 0.40)
    purchase_rate: float = 0.80  # P(pay | checkout), lowered by price sensitivity
    cart_return_rate: float = 0.25  # P(resume an abandoned cart | visit)
    store_purchase_rate: tuple[float, ...] = (0.0008, 0.006, 0.06, 0.003, 0.004, 0.0008)
    store_signup_rate: float = 0.5  # anonymous store buyers who give a loyalty card (else the sale is unlinked)
    basket_median: float = 250.0
    basket_sigma: float = 0.35
    discount_rate: float = 0.15  # share of the basket a redeemed coupon takes off

    # Identification and consents.
    signup_on_visit: tuple[float, ...] = (0.012, 0.035, 0.06, 0.04, 0.04, 0.02)
    checkout_signup_rate: float = 0.85  # anonymous shoppers who create an account at checkout (else abandon)
    anonymous_ads_consent: float = 0.55
    consent_at_signup: Mapping[str, float] = field(default_factory=lambda: _DEFAULT_CONSENTS)
    other_consent_at_signup: float = 0.3  # consent columns a custom catalog adds

    # Journey transitions.
    discovery_to_consideration: float = 0.012
    consideration_to_purchase: float = 0.02
    purchase_back_off: float = 0.015
    service_to_advocacy: float = 0.003
    repeat_need: float = 0.004
    dormancy_base: float = 0.001
    dormancy_per_inactive_day: float = 0.0005
    dormancy_fatigue: float = 0.0015
    dormant_return: float = 0.006
    dormant_to_churned: float = 0.008
    churned_return: float = 0.0003

    # After-sales events.
    support_rate: float = 0.003
    survey_rate: float = 0.002
    review_rate: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0015, 0.008, 0.0)
    referral_rate: float = 0.004

    # Outbound pressure.
    fatigue_half_life_days: float = 10.0
    fatigue_engagement: float = 0.35  # log-odds lost per unit of fatigue
    unsubscribe_base: float = 0.003
    spam_unsubscribe_factor: float = 5.0
    fatigue_unsubscribe: float = 0.004

    def __post_init__(self) -> None:
        if self.customers < 1 or self.days < 1 or self.decision_every_days < 1 or self.response_window_days < 1:
            raise ValueError("customers, days, decision_every_days and response_window_days must be >= 1")
        if not 0.0 <= self.none_share < 1.0:
            raise ValueError("none_share must be in [0, 1)")
        if not 0.0 <= self.initial_share <= 1.0:
            raise ValueError("initial_share must be in [0, 1]")
        if not self.prior_purchase_gap_days > 0:
            raise ValueError(f"prior_purchase_gap_days must be > 0, got {self.prior_purchase_gap_days}")
        if len(self.initial_mix) != LIVE_STATES or min(self.initial_mix) < 0 or sum(self.initial_mix) <= 0:
            raise ValueError(f"initial_mix needs {LIVE_STATES} non-negative weights")

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """[start, end) of the simulation, both at 00:00 UTC."""
        if self.start is None:
            end = pd.Timestamp.now(tz="UTC").floor("D")
            return end - pd.Timedelta(days=self.days), end
        start = pd.Timestamp(self.start)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        start = start.floor("D")
        return start, start + pd.Timedelta(days=self.days)

    def fatigue_decay(self) -> float:
        """Daily multiplier of fatigue."""
        return float(0.5 ** (1.0 / self.fatigue_half_life_days))


DEFAULT_CONFIG = SimulationConfig()  # 20,000 customers over the last 180 days
