"""Contact policies: consent, frequency caps, minimum gap, quiet hours, opt-out and fatigue suppression.

The same code runs online (one customer) and in batch (the whole base): both build a `ContactState` per
customer from the features (and, online, the decisions logged since the features were computed) and ask
`ContactPolicies.violation(...)`, which names the rule that blocks an action. "No contact" is never blocked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from journey.catalog import Action, Catalog
from journey.vocabulary import NO_CONTACT
from journey.yaml_config import load_yaml_model


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


def default_policies_path() -> Path:
    return Path(str(resources.files("journey") / "defaults" / "policies.yaml"))


def load_policies(path: Path | None = None) -> ContactPolicies:
    """Load and validate contact policies; None means the built-in default."""
    return load_yaml_model(path or default_policies_path(), ContactPolicies)
