"""Contact-policy state from features: the bridge between feature names and `journey.policies`.

Online, the features are as of the last snapshot, so the decisions logged since then are added on top;
in batch they are the snapshot itself. Both paths build the same `ContactState`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from features.definitions import CONSENT_CHANNELS, CONTACT_CHANNELS, RESPONSE_CHANNELS
from journey.policies import ContactState, ContactStates

EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def contact_state(
    features: Mapping[str, float],
    recent_contacts: Iterable[tuple[pd.Timestamp, str]],
    now: pd.Timestamp,
) -> ContactState:
    """Policy state of one customer at `now`.

    - consents: the point-in-time consent features (absent or NaN = no consent);
    - sent today / this week: the snapshot's 1- and 7-day contact counts plus contacts logged since;
    - ignored contacts: the last 30 days' contacts on a channel times (1 − its 90-day response rate), an
      estimate when responses are not counted per 30 days;
    - opt-out: any unsubscribe in the snapshot's last 30 days counts as recent (conservative).
    """
    state = ContactState(
        consents={column: _truthy(features.get(column)) for column in CONSENT_CHANNELS},
        sent_day={ch: _count(features.get(f"contacts_{ch}_1d")) for ch in CONTACT_CHANNELS},
        sent_week={ch: _count(features.get(f"contacts_{ch}_7d")) for ch in CONTACT_CHANNELS},
        hours_since_last_contact=_hours_since(features.get("last_contact_epoch_days"), now),
        days_since_opt_out=0.0 if _count(features.get("unsubscribes_30d")) > 0 else None,
        ignored_recent=_ignored(features),
    )
    for ts, channel in recent_contacts:
        age = now - ts
        if age < pd.Timedelta(days=7):
            state.sent_week[channel] = state.sent_week.get(channel, 0) + 1
        if age < pd.Timedelta(days=1):
            state.sent_day[channel] = state.sent_day.get(channel, 0) + 1
        hours = max(age.total_seconds() / 3600, 0.0)
        if state.hours_since_last_contact is None or hours < state.hours_since_last_contact:
            state.hours_since_last_contact = hours
    return state


_COUNTED: tuple[str, ...] = (
    *(f"contacts_{ch}_1d" for ch in CONTACT_CHANNELS),
    *(f"contacts_{ch}_7d" for ch in CONTACT_CHANNELS),
    *(f"contacts_{ch}_30d" for ch in RESPONSE_CHANNELS),
    "unsubscribes_30d",
)
_VALUES: tuple[str, ...] = (
    *CONSENT_CHANNELS,
    *(f"response_rate_{ch}_90d" for ch in RESPONSE_CHANNELS),
    "last_contact_epoch_days",
)


def contact_states(features: pd.DataFrame, now: pd.Timestamp) -> ContactStates:
    """`contact_state` for every row at once (no decisions logged since the snapshot).

    Consent: the point-in-time consent feature >= 0.5 (NaN = no consent); sent today / this week: the 1- and
    7-day contact counts; ignored: 30-day contacts × (1 − 90-day response rate), rounded half to even like
    `round`; opt-out: any unsubscribe in the last 30 days; hours since the last contact from its epoch day.
    The columns are read as one float block: serving calls this once per micro-batch on its hot path.
    """
    block = _numeric_block(features, [*_COUNTED, *_VALUES])
    counts = np.trunc(block[:, : len(_COUNTED)])
    counts[np.isnan(counts)] = 0  # absent or NaN counts as 0
    count = dict(zip(_COUNTED, counts.astype(np.int64).T, strict=True))
    value = dict(zip(_VALUES, block[:, len(_COUNTED) :].T, strict=True))
    ignored = {}
    for channel in RESPONSE_CHANNELS:
        rate = np.clip(value[f"response_rate_{channel}_90d"], 0.0, 1.0)
        rate[np.isnan(rate)] = 0.0
        ignored[channel] = np.round(count[f"contacts_{channel}_30d"] * (1.0 - rate)).astype(np.int64)
    epoch_days = value["last_contact_epoch_days"]
    now_hours = (now - EPOCH).total_seconds() / 3600
    return ContactStates(
        n=len(features),
        consents={name: value[name] >= 0.5 for name in CONSENT_CHANNELS},  # NaN compares False: no consent
        sent_day={ch: count[f"contacts_{ch}_1d"] for ch in CONTACT_CHANNELS},
        sent_week={ch: count[f"contacts_{ch}_7d"] for ch in CONTACT_CHANNELS},
        hours_since_last_contact=np.where(np.isnan(epoch_days), np.nan, np.maximum(now_hours - epoch_days * 24, 0.0)),
        days_since_opt_out=np.where(count["unsubscribes_30d"] > 0, 0.0, np.nan),
        ignored_recent=ignored,
    )


def _numeric_block(features: pd.DataFrame, names: list[str]) -> np.ndarray:
    """(rows × names) float copy of those columns; NaN for a missing column or a non-numeric value. An all-float
    frame (serving) is read as it is, without a conversion per column; others (a batch with ids) column by column."""
    n = len(features)
    position = {name: j for j, name in enumerate(features.columns)}
    if all(dtype.kind == "f" for dtype in features.dtypes):
        matrix = features.to_numpy(dtype=np.float64, copy=False)
        if not matrix.shape[1]:
            return np.full((n, len(names)), np.nan)
        index = np.array([position.get(name, -1) for name in names], dtype=np.int64)
        block = matrix[:, np.maximum(index, 0)]  # fancy indexing: a copy, the frame is never written
        block[:, index < 0] = np.nan
        return block
    block = np.full((n, len(names)), np.nan)
    for k, name in enumerate(names):
        if name in position:
            column = pd.to_numeric(features[name], errors="coerce")
            block[:, k] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return block


def _ignored(features: Mapping[str, float]) -> dict[str, int]:
    ignored = {}
    for channel in RESPONSE_CHANNELS:
        sent = _count(features.get(f"contacts_{channel}_30d"))
        rate = features.get(f"response_rate_{channel}_90d")
        rate = 0.0 if rate is None or math.isnan(rate) else min(max(rate, 0.0), 1.0)
        ignored[channel] = round(sent * (1.0 - rate))
    return ignored


def _hours_since(epoch_days: float | None, now: pd.Timestamp) -> float | None:
    if epoch_days is None or math.isnan(epoch_days):
        return None
    return max((now - EPOCH).total_seconds() / 3600 - epoch_days * 24, 0.0)


def _count(value: float | None) -> int:
    return 0 if value is None or math.isnan(value) else int(value)


def _truthy(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and value >= 0.5
