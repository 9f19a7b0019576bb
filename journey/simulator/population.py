"""Who the customers are: latent traits drawn once, and when and in which state each one enters the data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from journey.simulator.config import (
    CONSIDERATION,
    DAY_US,
    DISCOVERY,
    HOUR_US,
    LIVE_STATES,
    STATE_NAMES,
    SimulationConfig,
)
from journey.simulator.records import BoolArray, FloatArray, IntArray, to_utc

REGIONS: tuple[str, ...] = ("paris", "north", "east", "west", "south")
REGION_WEIGHTS = (0.22, 0.18, 0.18, 0.20, 0.22)
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-49", "50-64", "65+")
AGE_WEIGHTS = (0.12, 0.24, 0.30, 0.22, 0.12)

# Log-odds shift of each channel's engagement per age band (young: push/ads; older: mail/call).
_AGE_CHANNEL_TILT: dict[str, tuple[float, ...]] = {
    "push": (0.5, 0.3, 0.0, -0.3, -0.6),
    "social_ad": (0.5, 0.3, 0.0, -0.3, -0.5),
    "sms": (0.2, 0.1, 0.0, 0.0, -0.2),
    "mail": (-0.6, -0.3, 0.0, 0.3, 0.6),
    "call": (-0.5, -0.3, 0.0, 0.3, 0.5),
}

# Diurnal profile of session starts (no starts after 22:00 so a session never crosses midnight).
SESSION_HOURS = np.array(
    [0.5, 0.2, 0.1, 0.1, 0.1, 0.3, 1, 2.5, 3.5, 3, 3, 3.5, 4.5, 4, 3.5, 3.5, 4, 4.5, 5.5, 6.5, 7, 6, 0, 0]
)
SESSION_HOURS = SESSION_HOURS / SESSION_HOURS.sum()


@dataclass
class Traits:
    """Latent per-customer parameters (ground truth; features never see them)."""

    activity: FloatArray  # multiplies visit rates; active people also click more
    price_sensitivity: FloatArray  # in [0, 1]: lowers checkout and payment, raises coupon appeal
    store_preference: FloatArray  # in [0, 1]: buys in store rather than online
    app_user: BoolArray
    basket_log_median: FloatArray
    satisfaction: FloatArray  # in [0, 1]: survey scores, support load, drift to advocacy
    affinity: FloatArray  # (n, channels) engagement log-odds per catalog channel
    region: npt.NDArray[np.object_]
    age_band: npt.NDArray[np.object_]
    arrival_day: IntArray  # < 0 for customers already known at the start
    arrival_us: IntArray
    initial_state: IntArray

    def frame(self, customer_ids: npt.NDArray[np.object_], channels: tuple[str, ...]) -> pd.DataFrame:
        columns: dict[str, object] = {
            "customer_id": customer_ids,
            "arrival_ts": to_utc(self.arrival_us),
            "initial_phase": np.array(STATE_NAMES, dtype=object)[self.initial_state],
            "activity": self.activity,
            "price_sensitivity": self.price_sensitivity,
            "store_preference": self.store_preference,
            "app_user": self.app_user,
            "basket_median": np.exp(self.basket_log_median),
            "satisfaction": self.satisfaction,
        }
        for j, channel in enumerate(channels):
            columns[f"affinity_{channel}"] = self.affinity[:, j]
        return pd.DataFrame(columns)


def session_start_us(rng: np.random.Generator, day_us: int, n: int) -> IntArray:
    """Random session start times within a day, following the diurnal profile."""
    hours = rng.choice(24, size=n, p=SESSION_HOURS)
    return day_us + hours * HOUR_US + rng.integers(0, HOUR_US, size=n)


def draw_traits(config: SimulationConfig, channels: tuple[str, ...], start_us: int, rng: np.random.Generator) -> Traits:
    """Draw the population: stable traits, arrival time and the state each customer enters in."""
    n = config.customers
    age_code = rng.choice(len(AGE_BANDS), size=n, p=AGE_WEIGHTS)
    affinity = rng.normal(0.0, 0.7, size=(n, len(channels)))
    for j, channel in enumerate(channels):
        tilt = _AGE_CHANNEL_TILT.get(channel)
        if tilt is not None:
            affinity[:, j] += np.asarray(tilt)[age_code]
    app_user = rng.random(n) < np.array([0.7, 0.6, 0.45, 0.3, 0.15])[age_code]
    arrival_day, arrival_us, initial_state = _arrivals(config, start_us, rng)
    return Traits(
        activity=rng.lognormal(-0.125, 0.5, size=n),  # mean 1
        price_sensitivity=rng.beta(2.0, 2.5, size=n),
        store_preference=rng.beta(1.4, 2.0, size=n),
        app_user=app_user,
        basket_log_median=rng.normal(np.log(config.basket_median), 0.5, size=n),
        satisfaction=rng.beta(4.0, 2.0, size=n),
        affinity=affinity,
        region=np.array(REGIONS, dtype=object)[rng.choice(len(REGIONS), size=n, p=REGION_WEIGHTS)],
        age_band=np.array(AGE_BANDS, dtype=object)[age_code],
        arrival_day=arrival_day,
        arrival_us=arrival_us,
        initial_state=initial_state,
    )


def _arrivals(config: SimulationConfig, start_us: int, rng: np.random.Generator) -> tuple[IntArray, IntArray, IntArray]:
    """Known customers (negative arrival day, any state) and new visitors arriving uniformly over the window."""
    n = config.customers
    known = rng.random(n) < config.initial_share
    mix = np.asarray(config.initial_mix, dtype=np.float64)
    state = np.where(
        known,
        rng.choice(LIVE_STATES, size=n, p=mix / mix.sum()),
        np.where(rng.random(n) < config.new_arrival_consideration, CONSIDERATION, DISCOVERY),
    ).astype(np.int64)
    day = np.where(known, -rng.integers(1, 730, size=n), rng.integers(0, config.days, size=n)).astype(np.int64)
    arrival_us = session_start_us(rng, start_us, n) + day * DAY_US
    return day, arrival_us, state
