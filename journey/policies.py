"""Contact policies: consent, frequency caps, minimum gap, quiet hours, opt-out and fatigue suppression.

The same rules run online (one customer) and in batch (the whole base). `ContactPolicies.violation_codes` is
the vectorised form the decision engine uses: it takes `ContactStates` (columnar arrays, one entry per customer)
and returns, for every (customer, channel), the code of the first rule that blocks it (0 = allowed).
`ContactPolicies.violation(...)` is the readable form for one customer and one action: it names the rule and
its numbers. Both follow the same rule order, and a property test keeps them in agreement.
"No contact" is never blocked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from journey.catalog import Action, Catalog
from journey.vocabulary import NO_CONTACT
from journey.yaml_config import load_yaml_model

# Codes of `ContactPolicies.violation_codes`, in the order the rules are checked (the first that blocks wins).
ALLOWED, CONSENT, OPT_OUT, MIN_GAP, QUIET_HOURS, FREQUENCY_CAP, FATIGUE = range(7)
RULE_NAMES: dict[int, str] = {
    CONSENT: "no consent",
    OPT_OUT: "opt-out suppression",
    MIN_GAP: "minimum gap",
    QUIET_HOURS: "quiet hours",
    FREQUENCY_CAP: "frequency cap",
    FATIGUE: "fatigue suppression",
}


class Cap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    per_day: int | None = Field(default=None, ge=0)
    per_week: int | None = Field(default=None, ge=0)


class Caps(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    overall: Cap = Cap()
    channels: dict[str, Cap] = Field(default_factory=dict)


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int = Field(ge=0, le=23)
    end: int = Field(ge=0, le=23)
    channels: list[str] = Field(default_factory=list)

    def covers(self, hour: int) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


class IgnoredSuppression(BaseModel):
    """After `ignored` unanswered contacts on `channel` within `within_days`, pause it `suppress_days`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str
    ignored: int = Field(ge=1)
    within_days: int = Field(ge=1)
    suppress_days: int = Field(ge=1)


class ContactPolicies(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    caps: Caps = Caps()
    uncapped_channels: list[str] = Field(
        default_factory=list, description="Channels shown on the customer's own visit: not counted by caps/gap."
    )
    min_gap_hours: float = Field(default=0, ge=0)
    quiet_hours: QuietHours | None = None
    opt_out_suppression_days: int = Field(default=0, ge=0)
    ignored_suppression: list[IgnoredSuppression] = Field(default_factory=list)

    def check_against(self, catalog: Catalog) -> list[str]:
        """Channels named here but absent from the catalog: likely a typo, reported by `parcours validate`."""
        named = set(self.caps.channels) | set(self.uncapped_channels)
        named |= {rule.channel for rule in self.ignored_suppression}
        if self.quiet_hours:
            named |= set(self.quiet_hours.channels)
        return sorted(named - set(catalog.channels))

    def violation(self, action: Action, state: ContactState, catalog: Catalog, hour: int) -> str | None:
        """The first rule that forbids `action` for this customer now, as a readable reason; None if allowed."""
        if action.channel == NO_CONTACT:
            return None
        if action.channel in self.uncapped_channels:
            return _consent_rule(action, state, catalog, hour) or self._opt_out_rule(action, state, catalog, hour)
        for rule in (
            _consent_rule,
            self._opt_out_rule,
            self._gap_rule,
            self._quiet_hours_rule,
            self._cap_rule,
            self._ignored_rule,
        ):
            reason = rule(action, state, catalog, hour)
            if reason:
                return reason
        return None

    def violation_codes(
        self, states: ContactStates, channels: Sequence[str], catalog: Catalog, hour: int
    ) -> np.ndarray:
        """(customers × channels) int8: the first rule blocking each channel for each customer, 0 if allowed.

        Every rule depends on the channel only (not the content), so callers expand to actions by channel index.
        Same order and semantics as `violation`; a channel missing from the catalog is blocked as CONSENT.
        Rules are written from the last to the first, so the first rule that blocks is the code that stays.
        """
        codes = np.zeros((states.n, len(channels)), dtype=np.int8)
        opted_out = self._opted_out(states)
        gap = self._too_close(states)
        overall = self._over_cap(
            self.caps.overall, states.total_day(self.uncapped_channels), states.total_week(self.uncapped_channels)
        )
        for j, channel in enumerate(channels):
            if channel == NO_CONTACT:
                continue
            column = codes[:, j]  # a view: writes go to `codes`
            if channel not in self.uncapped_channels:
                for rule in self.ignored_suppression:
                    if rule.channel == channel:
                        column[states.count(states.ignored_recent, channel) >= rule.ignored] = FATIGUE
                if overall is not None:
                    column[overall] = FREQUENCY_CAP
                cap = self.caps.channels.get(channel)
                if cap is not None:
                    day, week = states.count(states.sent_day, channel), states.count(states.sent_week, channel)
                    capped = self._over_cap(cap, day, week)
                    if capped is not None:
                        column[capped] = FREQUENCY_CAP
                if self.quiet_hours and channel in self.quiet_hours.channels and self.quiet_hours.covers(hour):
                    column[:] = QUIET_HOURS
                if gap is not None:
                    column[gap] = MIN_GAP
            if opted_out is not None:
                column[opted_out] = OPT_OUT
            spec = catalog.channels.get(channel)
            if spec is None:
                column[:] = CONSENT
            elif spec.consent is not None:
                column[~states.consent(spec.consent)] = CONSENT
        return codes

    def _opted_out(self, states: ContactStates) -> np.ndarray | None:
        if not self.opt_out_suppression_days:
            return None
        return states.days_since_opt_out < self.opt_out_suppression_days  # NaN (unknown) compares False

    def _too_close(self, states: ContactStates) -> np.ndarray | None:
        if not self.min_gap_hours:
            return None
        return states.hours_since_last_contact < self.min_gap_hours  # NaN (never contacted) compares False

    @staticmethod
    def _over_cap(cap: Cap, day: np.ndarray, week: np.ndarray) -> np.ndarray | None:
        blocked = None
        if cap.per_day is not None:
            blocked = day >= cap.per_day
        if cap.per_week is not None:
            blocked = week >= cap.per_week if blocked is None else blocked | (week >= cap.per_week)
        return blocked

    def _opt_out_rule(self, action: Action, state: ContactState, catalog: Catalog, hour: int) -> str | None:
        days = state.days_since_opt_out
        if self.opt_out_suppression_days and days is not None and days < self.opt_out_suppression_days:
            return f"opt-out suppression: unsubscribed {days:.0f} days ago (< {self.opt_out_suppression_days})"
        return None

    def _gap_rule(self, action: Action, state: ContactState, catalog: Catalog, hour: int) -> str | None:
        gap = state.hours_since_last_contact
        if self.min_gap_hours and gap is not None and gap < self.min_gap_hours:
            return f"minimum gap: last contact {gap:.1f} h ago (< {self.min_gap_hours:g} h)"
        return None

    def _quiet_hours_rule(self, action: Action, state: ContactState, catalog: Catalog, hour: int) -> str | None:
        quiet = self.quiet_hours
        if quiet and action.channel in quiet.channels and quiet.covers(hour):
            return f"quiet hours: {action.channel} silent {quiet.start}:00-{quiet.end}:00 UTC"
        return None

    def _cap_rule(self, action: Action, state: ContactState, catalog: Catalog, hour: int) -> str | None:
        counted = [ch for ch in state.sent_day if ch not in self.uncapped_channels]
        overall_day = sum(state.sent_day[ch] for ch in counted)
        overall_week = sum(n for ch, n in state.sent_week.items() if ch not in self.uncapped_channels)
        for scope, cap, day, week in (
            ("overall", self.caps.overall, overall_day, overall_week),
            (
                action.channel,
                self.caps.channels.get(action.channel, Cap()),
                state.sent_day.get(action.channel, 0),
                state.sent_week.get(action.channel, 0),
            ),
        ):
            if cap.per_day is not None and day >= cap.per_day:
                return f"frequency cap: {scope} {day}/{cap.per_day} contacts today"
            if cap.per_week is not None and week >= cap.per_week:
                return f"frequency cap: {scope} {week}/{cap.per_week} contacts in 7 days"
        return None

    def _ignored_rule(self, action: Action, state: ContactState, catalog: Catalog, hour: int) -> str | None:
        for rule in self.ignored_suppression:
            ignored = state.ignored_recent.get(action.channel, 0)
            if rule.channel == action.channel and ignored >= rule.ignored:
                return (
                    f"fatigue suppression: {ignored} ignored {action.channel} contacts recently "
                    f"(>= {rule.ignored} in {rule.within_days} days)"
                )
        return None


def _consent_rule(action: Action, state: ContactState, catalog: Catalog, hour: int) -> str | None:
    spec = catalog.channels.get(action.channel)
    if spec is None:
        return f"unknown channel '{action.channel}'"
    if spec.consent and not state.consents.get(spec.consent, False):
        return f"no consent: {spec.consent} is not given"
    return None


@dataclass
class ContactState:
    """What the policies need to know about one customer's recent contacts; unknown = most permissive
    except consent, which defaults to absent."""

    consents: Mapping[str, bool] = field(default_factory=dict)
    sent_day: dict[str, int] = field(default_factory=dict)
    sent_week: dict[str, int] = field(default_factory=dict)
    hours_since_last_contact: float | None = None
    days_since_opt_out: float | None = None
    ignored_recent: dict[str, int] = field(default_factory=dict)

    def record(self, channel: str) -> None:
        """Count a contact just decided, so the next decision for the same customer sees it."""
        if channel == NO_CONTACT:
            return
        self.sent_day[channel] = self.sent_day.get(channel, 0) + 1
        self.sent_week[channel] = self.sent_week.get(channel, 0) + 1
        self.hours_since_last_contact = 0.0


@dataclass
class ContactStates:
    """`ContactState` for n customers as columns: one array per consent / channel count, NaN = unknown.

    Batch scoring builds it straight from the feature frame; online, `from_states` wraps one `ContactState`.
    """

    n: int
    consents: dict[str, np.ndarray] = field(default_factory=dict)
    sent_day: dict[str, np.ndarray] = field(default_factory=dict)
    sent_week: dict[str, np.ndarray] = field(default_factory=dict)
    hours_since_last_contact: np.ndarray = field(default_factory=lambda: np.empty(0))
    days_since_opt_out: np.ndarray = field(default_factory=lambda: np.empty(0))
    ignored_recent: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = np.full(self.n, np.nan)
        if len(self.hours_since_last_contact) != self.n:
            self.hours_since_last_contact = unknown
        if len(self.days_since_opt_out) != self.n:
            self.days_since_opt_out = unknown.copy()
        for name, column in self._columns():
            if len(column) != self.n:
                raise ValueError(f"ContactStates.{name}: {len(column)} values for {self.n} customers")

    def _columns(self) -> list[tuple[str, np.ndarray]]:
        out = [
            ("hours_since_last_contact", self.hours_since_last_contact),
            ("days_since_opt_out", self.days_since_opt_out),
        ]
        for group, columns in (
            ("consents", self.consents),
            ("sent_day", self.sent_day),
            ("sent_week", self.sent_week),
            ("ignored_recent", self.ignored_recent),
        ):
            out += [(f"{group}[{key}]", column) for key, column in columns.items()]
        return out

    def __len__(self) -> int:
        return self.n

    def consent(self, column: str) -> np.ndarray:
        """Consent given (absent column = not given)."""
        return self.consents[column].astype(bool) if column in self.consents else np.zeros(self.n, dtype=bool)

    def count(self, counts: Mapping[str, np.ndarray], channel: str) -> np.ndarray:
        return counts[channel] if channel in counts else np.zeros(self.n, dtype=np.int64)

    def total_day(self, uncounted: Sequence[str]) -> np.ndarray:
        """Contacts in the last day on every channel but `uncounted` (the caps' overall count)."""
        return _total(self.sent_day, uncounted, self.n)

    def total_week(self, uncounted: Sequence[str]) -> np.ndarray:
        return _total(self.sent_week, uncounted, self.n)

    def take(self, rows: np.ndarray | slice) -> ContactStates:
        """The states of a subset of customers (a batch of the base)."""
        pick = np.arange(self.n)[rows]

        def sub(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {key: column[pick] for key, column in columns.items()}

        return ContactStates(
            n=len(pick),
            consents=sub(self.consents),
            sent_day=sub(self.sent_day),
            sent_week=sub(self.sent_week),
            hours_since_last_contact=self.hours_since_last_contact[pick],
            days_since_opt_out=self.days_since_opt_out[pick],
            ignored_recent=sub(self.ignored_recent),
        )

    @classmethod
    def from_states(cls, states: Sequence[ContactState]) -> ContactStates:
        """Columns from per-customer states; a key missing for one customer is 0 (counts) or False (consent)."""

        def counts(per: Sequence[Mapping[str, int]]) -> dict[str, np.ndarray]:
            keys = dict.fromkeys(k for m in per for k in m)
            return {k: np.array([m.get(k, 0) for m in per], dtype=np.int64) for k in keys}

        def optional(values: Sequence[float | None]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        consent_keys = dict.fromkeys(k for s in states for k in s.consents)
        return cls(
            n=len(states),
            consents={k: np.array([bool(s.consents.get(k, False)) for s in states]) for k in consent_keys},
            sent_day=counts([s.sent_day for s in states]),
            sent_week=counts([s.sent_week for s in states]),
            hours_since_last_contact=optional([s.hours_since_last_contact for s in states]),
            days_since_opt_out=optional([s.days_since_opt_out for s in states]),
            ignored_recent=counts([s.ignored_recent for s in states]),
        )


def _total(counts: Mapping[str, np.ndarray], uncounted: Sequence[str], n: int) -> np.ndarray:
    total = np.zeros(n, dtype=np.int64)
    for channel, column in counts.items():
        if channel not in uncounted:
            total += column
    return total


def default_policies_path() -> Path:
    return Path(str(resources.files("journey") / "defaults" / "policies.yaml"))


def load_policies(path: Path | None = None) -> ContactPolicies:
    """Load and validate contact policies; None means the built-in default."""
    return load_yaml_model(path or default_policies_path(), ContactPolicies)
