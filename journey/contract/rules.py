"""The row rules of each table. Every bad row gets exactly one reason: the first rule it fails, in the order
the rules are applied here (presence and types first, then vocabularies, ranges, references, duplicates).

All checks are boolean masks over the whole column; messages are built only for the rows that fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from journey.catalog import Catalog
from journey.contract import parse
from journey.contract.parse import Parsed, quoted
from journey.contract.schema import (
    EARLIEST_TS,
    FUTURE_TOLERANCE,
    NORMALISED_COLUMNS,
    OPTIONAL_COLUMNS,
    REVIEW_RATING_RANGE,
    SURVEY_SCORE_RANGE,
)
from journey.vocabulary import CONSENT_FIELDS, EVENT_CHANNELS, NO_CONTACT, NO_CONTENT, EventType

_NONE_HINT = f" (write '{NO_CONTACT}' for no contact)"

Messages = Callable[[np.ndarray], "pd.Series | str"]


@dataclass
class Verdicts:
    """Per-row outcome of one table: valid flag, the reason of the first failed rule, counts per rule."""

    rows: int
    valid: np.ndarray = field(init=False)
    reason: np.ndarray = field(init=False)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.valid = np.ones(self.rows, dtype=bool)
        self.reason = np.full(self.rows, None, dtype=object)

    def flag(self, mask: np.ndarray | pd.Series, rule: str, message: Messages | str | None = None) -> None:
        """Quarantine rows of `mask` not already quarantined; `rule` is the summary key, `message` the detail."""
        hit = np.asarray(mask, dtype=bool) & self.valid
        count = int(hit.sum())
        if count == 0:
            return
        detail = message(hit) if callable(message) else (message or rule)
        self.reason[hit] = detail.to_numpy(dtype=object) if isinstance(detail, pd.Series) else detail
        self.valid &= ~hit
        self.counts[rule] = self.counts.get(rule, 0) + count


@dataclass
class Checked:
    """A table after its rules: the normalised valid rows and the verdict for every input row."""

    frame: pd.DataFrame
    verdicts: Verdicts


def _with_value(column: str, raw: pd.Series, template: str, quote: str = "'") -> Messages:
    """Message builder quoting the user's original cell: template has one `{}` for the quoted value."""
    before, after = template.split("{}")
    return lambda hit: f"{column}: {before}" + quoted(raw, hit, quote=quote) + after


def _require(v: Verdicts, column: str, parsed: Parsed) -> None:
    v.flag(parsed.missing, f"{column}: missing")


def _flag_invalid(v: Verdicts, column: str, parsed: Parsed, raw: pd.Series, noun: str) -> None:
    v.flag(parsed.invalid, f"{column}: not {noun}", _with_value(column, raw, f"not {noun} ({{}})"))


def _flag_time_range(v: Verdicts, column: str, stamps: pd.Series, raw: pd.Series, now: pd.Timestamp) -> None:
    """Dates before 1990 are placeholders (1900-01-01) and dates after tomorrow are clock or entry errors."""
    early = (stamps < EARLIEST_TS).to_numpy(dtype=bool)  # NaT compares False
    v.flag(
        early,
        f"{column}: before {EARLIEST_TS:%Y-%m-%d}",
        _with_value(column, raw, f"{{}} is before {EARLIEST_TS:%Y-%m-%d}"),
    )
    limit = now + FUTURE_TOLERANCE
    late = (stamps > limit).to_numpy(dtype=bool)
    v.flag(
        late,
        f"{column}: more than 1 day in the future",
        _with_value(column, raw, f"{{}} is in the future (after {limit:%Y-%m-%d %H:%M} UTC)"),
    )


def _flag_timestamp(v: Verdicts, column: str, raw: pd.Series, now: pd.Timestamp, required: bool) -> Parsed:
    stamps = parse.parse_timestamp(raw)
    if required:
        _require(v, column, stamps)
    _flag_invalid(v, column, stamps, raw, "a timestamp")
    _flag_time_range(v, column, stamps.values, raw, now)
    return stamps


def _flag_vocabulary(v: Verdicts, column: str, raw: pd.Series, names: list[str], label: str, hint: str = "") -> Parsed:
    parsed = parse.parse_vocabulary(raw, names)
    v.flag(parsed.missing, f"{column}: missing", f"{column}: missing{hint}")
    v.flag(parsed.invalid, f"{column}: not in the {label}", _with_value(column, raw, f"{{}} is not in the {label}"))
    return parsed


def _flag_customer_reference(v: Verdicts, ids: Parsed, valid_ids: pd.Index | None, all_ids: pd.Index | None) -> None:
    """Rows must belong to a valid customer; say whether the customer is unknown or was quarantined.

    Membership is decided once per distinct id, then spread to rows through the factorisation codes.
    """
    if valid_ids is None or all_ids is None or ids.distinct is None:  # customers rejected: nothing to refer to
        return
    known = ids.per_row(ids.distinct.isin(valid_ids).to_numpy())
    seen = ids.per_row(ids.distinct.isin(all_ids).to_numpy())
    v.flag(
        seen & ~known,
        "customer_id: customer was quarantined",
        lambda hit: "customer_id: customer " + quoted(ids.values, hit) + " was quarantined in customers",
    )
    v.flag(~known, "customer_id: unknown customer", "customer_id: unknown customer (not in customers)")


def _key(parsed: Parsed | pd.Series) -> np.ndarray:
    """An int64 per row that is equal exactly when the normalised values are equal (for duplicate checks)."""
    if isinstance(parsed, Parsed) and parsed.codes is not None:
        return parsed.codes.astype(np.int64)
    series = parsed.values if isinstance(parsed, Parsed) else parsed
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return np.asarray(series.array.asi8, dtype=np.int64)  # NaT is one fixed sentinel value
    return pd.factorize(series, use_na_sentinel=True)[0].astype(np.int64)


def _flag_duplicates(v: Verdicts, keys: list[np.ndarray], rule: str, prefix: str) -> None:
    """Among rows still valid, every repeat of a key after its first occurrence names that first row."""
    positions = np.flatnonzero(v.valid)
    subset = pd.DataFrame({i: key[positions] for i, key in enumerate(keys)})
    involved = subset.duplicated(keep=False).to_numpy()
    if not involved.any():
        return
    later = subset.duplicated(keep="first").to_numpy()
    group = subset[involved].groupby(list(subset.columns), sort=False).ngroup().to_numpy()
    first = pd.Series(positions[involved]).groupby(group).transform("min").to_numpy()
    mask = np.zeros(v.rows, dtype=bool)
    mask[positions[later]] = True
    first_of = np.zeros(v.rows, dtype=np.int64)
    first_of[positions[involved]] = first
    v.flag(mask, rule, lambda hit: prefix + "duplicate of row " + pd.Series(first_of[hit]).astype(str))


def _column(raw: pd.DataFrame, table: str, column: str) -> pd.Series:
    """The raw column, or the contract default for an absent optional column."""
    if column in raw.columns:
        return raw[column]
    return pd.Series(OPTIONAL_COLUMNS[table][column], index=raw.index, dtype=object)


def check_customers(raw: pd.DataFrame, now: pd.Timestamp) -> Checked:
    v = Verdicts(len(raw))
    ids = parse.parse_id(raw["customer_id"])
    _require(v, "customer_id", ids)
    signup = _flag_timestamp(v, "signup_ts", raw["signup_ts"], now, required=False)
    consents: dict[str, pd.Series] = {}
    for column in CONSENT_FIELDS:
        if column not in raw.columns:
            consents[column] = pd.Series(False, index=raw.index, dtype=bool)
            continue
        parsed = parse.parse_consent(raw[column])
        _flag_invalid(v, column, parsed, raw[column], "a yes/no value")
        consents[column] = parsed.values
    _flag_duplicates(v, [_key(ids)], "customer_id: duplicate", "customer_id: ")
    extras = raw[[c for c in raw.columns if c not in NORMALISED_COLUMNS["customers"]]]
    frame = pd.concat(
        [pd.DataFrame({"customer_id": ids.values, "signup_ts": signup.values, **consents}), extras], axis=1
    )
    return Checked(_keep(frame, v), v)


def check_events(raw: pd.DataFrame, now: pd.Timestamp, valid_ids: pd.Index | None, all_ids: pd.Index | None) -> Checked:
    v = Verdicts(len(raw))
    ids = parse.parse_id(raw["customer_id"])
    _require(v, "customer_id", ids)
    stamps = _flag_timestamp(v, "ts", raw["ts"], now, required=True)
    kinds = _flag_vocabulary(v, "event_type", raw["event_type"], [e.value for e in EventType], "event vocabulary")
    channel_raw = _column(raw, "events", "channel")
    channels = _flag_vocabulary(v, "channel", channel_raw, sorted(EVENT_CHANNELS), "event channels")
    content = parse.parse_text(_column(raw, "events", "content"))
    values = _flag_event_values(v, _column(raw, "events", "value"), kinds.values)
    _flag_customer_reference(v, ids, valid_ids, all_ids)
    frame = pd.DataFrame(
        {
            "customer_id": ids.values,
            "ts": stamps.values,
            "event_type": kinds.values,
            "channel": channels.values,
            "content": content.values,
            "value": values,
        }
    )
    keys = [_key(ids), _key(stamps.values), _key(kinds), _key(channels), _key(content), _key(values)]
    _flag_duplicates(v, keys, "duplicate event", "")
    return Checked(_keep(frame, v), v)


def _flag_event_values(v: Verdicts, raw: pd.Series, kinds: pd.Series) -> pd.Series:
    """Purchase amounts are >= 0, survey scores 0–10, review ratings 1–5; a missing value is allowed (NaN)."""
    parsed = parse.parse_number(raw)
    _flag_invalid(v, "value", parsed, raw, "a number")
    values = parsed.values
    purchase = kinds.isin([EventType.PURCHASE.value, EventType.STORE_PURCHASE.value]).to_numpy(dtype=bool)
    v.flag(
        purchase & (values < 0).to_numpy(dtype=bool),
        "value: purchase amount must be >= 0",
        _with_value("value", raw, "purchase amount must be >= 0 (got {})", quote=""),
    )
    for kind, what, (low, high) in (
        (EventType.SURVEY, "survey score", SURVEY_SCORE_RANGE),
        (EventType.REVIEW, "review rating", REVIEW_RATING_RANGE),
    ):
        outside = ((values < low) | (values > high)).to_numpy(dtype=bool)
        out_of_range = kinds.eq(kind.value).to_numpy(dtype=bool) & outside
        rule = f"{what} must be between {low:g} and {high:g}"
        v.flag(out_of_range, f"value: {rule}", _with_value("value", raw, rule + " (got {})", quote=""))
    return values


def check_contacts(
    raw: pd.DataFrame,
    now: pd.Timestamp,
    catalog: Catalog,
    valid_ids: pd.Index | None,
    all_ids: pd.Index | None,
) -> Checked:
    v = Verdicts(len(raw))
    decisions = parse.parse_id(raw["decision_id"])
    _require(v, "decision_id", decisions)
    ids = parse.parse_id(raw["customer_id"])
    _require(v, "customer_id", ids)
    stamps = _flag_timestamp(v, "ts", raw["ts"], now, required=True)
    channels = _flag_vocabulary(
        v, "channel", raw["channel"], list(catalog.channel_names), "catalog channels", _NONE_HINT
    )
    contents = _flag_vocabulary(
        v, "content", raw["content"], list(catalog.content_names), "catalog contents", _NONE_HINT
    )
    _flag_action_pairs(v, channels.values, contents.values, catalog)
    propensity = _flag_propensity(v, _column(raw, "contacts", "propensity"))
    policy = parse.parse_text(_column(raw, "contacts", "policy")).values.fillna(
        str(OPTIONAL_COLUMNS["contacts"]["policy"])
    )
    _flag_customer_reference(v, ids, valid_ids, all_ids)
    _flag_duplicates(v, [_key(decisions)], "decision_id: duplicate", "decision_id: ")
    frame = pd.DataFrame(
        {
            "decision_id": decisions.values,
            "customer_id": ids.values,
            "ts": stamps.values,
            "channel": channels.values,
            "content": contents.values,
            "propensity": propensity,
            "policy": policy.astype(object),
        }
    )
    return Checked(_keep(frame, v), v)


def _flag_action_pairs(v: Verdicts, channels: pd.Series, contents: pd.Series, catalog: Catalog) -> None:
    """'none' goes with 'none'; any other content must be one the catalog allows on that channel."""
    no_channel = channels.eq(NO_CONTACT).to_numpy(dtype=bool)
    no_content = contents.eq(NO_CONTENT).to_numpy(dtype=bool)
    v.flag(
        no_channel & ~no_content,
        f"channel: '{NO_CONTACT}' needs content '{NO_CONTENT}'",
        lambda hit: f"channel: '{NO_CONTACT}' must go with content '{NO_CONTENT}', got " + quoted(contents, hit),
    )
    v.flag(
        no_content & ~no_channel,
        f"content: '{NO_CONTENT}' needs channel '{NO_CONTACT}'",
        lambda hit: f"content: '{NO_CONTENT}' must go with channel '{NO_CONTACT}', got " + quoted(channels, hit),
    )
    allowed = pd.MultiIndex.from_tuples([tuple(action) for action in catalog.actions])
    pairs = pd.MultiIndex.from_arrays([channels.fillna(""), contents.fillna("")])
    disallowed = ~no_channel & ~np.asarray(pairs.isin(allowed), dtype=bool)
    v.flag(
        disallowed,
        "content: not allowed on this channel by the catalog",
        lambda hit: (
            "content: "
            + quoted(contents, hit)
            + " is not allowed on channel "
            + quoted(channels, hit).to_numpy()
            + " in the catalog"
        ),
    )


def _flag_propensity(v: Verdicts, raw: pd.Series) -> pd.Series:
    """The logging policy's probability of its choice: in (0, 1], or NaN for legacy logs."""
    parsed = parse.parse_number(raw)
    _flag_invalid(v, "propensity", parsed, raw, "a number")
    values = parsed.values
    outside = ((values <= 0) | (values > 1)).to_numpy(dtype=bool)
    v.flag(outside, "propensity: outside (0, 1]", _with_value("propensity", raw, "{} is outside (0, 1]", quote=""))
    return values


def _keep(frame: pd.DataFrame, v: Verdicts) -> pd.DataFrame:
    """Only the valid rows, renumbered from 0."""
    return frame.loc[v.valid].reset_index(drop=True)
