"""What each table must hold: required columns, optional ones with their default, and the fixed limits.

Required columns make a table unusable when absent. Optional ones are filled with a safe default (no consent,
channel `other`, amount unknown) and the report says so, so a bare transaction log still flows through.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

import pandas as pd

from journey.vocabulary import CONSENT_FIELDS

REQUIRED_COLUMNS: Final = MappingProxyType(
    {
        "customers": ("customer_id", "signup_ts"),
        "events": ("customer_id", "ts", "event_type"),
        "contacts": ("decision_id", "customer_id", "ts", "channel", "content"),
    }
)

# Optional contract columns and the value used when the column is absent (the report warns about it).
OPTIONAL_COLUMNS: Final = MappingProxyType(
    {
        "customers": MappingProxyType(dict.fromkeys(CONSENT_FIELDS, False)),
        "events": MappingProxyType({"channel": "other", "content": None, "value": float("nan")}),
        "contacts": MappingProxyType({"propensity": float("nan"), "policy": "unknown"}),
    }
)

# Column order of the normalised frames (customers keep their extra attributes after these).
NORMALISED_COLUMNS: Final = MappingProxyType(
    {
        "customers": ("customer_id", "signup_ts", *CONSENT_FIELDS),
        "events": ("customer_id", "ts", "event_type", "channel", "content", "value"),
        "contacts": ("decision_id", "customer_id", "ts", "channel", "content", "propensity", "policy"),
    }
)

EARLIEST_TS: Final = pd.Timestamp("1990-01-01", tz="UTC")
FUTURE_TOLERANCE: Final = pd.Timedelta(days=1)
MAX_QUARANTINE_SHARE: Final = 0.5
SURVEY_SCORE_RANGE: Final = (0.0, 10.0)
REVIEW_RATING_RANGE: Final = (1.0, 5.0)
QUARANTINE_COLUMNS: Final = ("table", "row", "reason", "record")


def contract_columns(table: str) -> tuple[str, ...]:
    """Every column the contract knows for `table` (required first)."""
    return (*REQUIRED_COLUMNS[table], *OPTIONAL_COLUMNS[table])


def empty_frame(table: str) -> pd.DataFrame:
    """A zero-row frame of `table` with the normalised dtypes, for a table the user does not have."""
    dtypes = {
        "signup_ts": "datetime64[us, UTC]",
        "ts": "datetime64[us, UTC]",
        "value": "float64",
        "propensity": "float64",
        **dict.fromkeys(CONSENT_FIELDS, "bool"),
    }
    return pd.DataFrame(
        {column: pd.Series([], dtype=dtypes.get(column, "object")) for column in NORMALISED_COLUMNS[table]}
    )
