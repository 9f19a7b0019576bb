"""Request-time features: computed at the moment of the request, identically in training and serving.

Snapshot features are up to `snapshot_every_days` old when read; anything that is "time since X" is therefore
recomputed from an absolute time stored in the snapshot (`*_epoch_days`) and the request time, so training rows
(request time = decision time or cutoff) and live requests see the same definition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.build import DAY_US

REQUEST_FEATURE_NAMES: tuple[str, ...] = (
    "days_since_last_event",
    "days_since_last_purchase",
    "days_since_last_contact",
    "hour_of_day",
    "day_of_week",
)
# request feature -> snapshot column holding the absolute time (days since 1970-01-01 UTC) it is measured from
_SINCE: dict[str, str] = {
    "days_since_last_event": "last_event_epoch_days",
    "days_since_last_purchase": "last_purchase_epoch_days",
    "days_since_last_contact": "last_contact_epoch_days",
}


def add_request_features(frame: pd.DataFrame, request_ts: pd.Series | pd.Timestamp) -> pd.DataFrame:
    """A copy of `frame` with REQUEST_FEATURE_NAMES added (float64; NaN where the snapshot column is NaN).

    `request_ts` is one timestamp for every row or a Series aligned with `frame` (naive times are UTC). `hour_of_day`
    (0-23) and `day_of_week` (0 = Monday) are in UTC.
    """
    if isinstance(request_ts, pd.Series):
        ts = pd.to_datetime(request_ts, utc=True)
        ts.index = frame.index
    else:
        ts = pd.Series(pd.Timestamp(request_ts), index=frame.index)
        ts = pd.to_datetime(ts, utc=True)
    epoch_days = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype("int64") / DAY_US
    out = frame.copy()
    for name, column in _SINCE.items():
        stored = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64") if column in frame else np.nan
        out[name] = epoch_days - stored
    out["hour_of_day"] = ts.dt.hour.to_numpy(dtype="float64")
    out["day_of_week"] = ts.dt.dayofweek.to_numpy(dtype="float64")
    return out
