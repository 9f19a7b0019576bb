"""The action catalog: channels and contents a marketer can use, validated from YAML.

An action is a (channel, content) pair; "no contact" is the action ("none", "none") and is always valid.
Everything downstream (simulator, response model, decisions) reads the catalog, so a user's own file with
their own channels and contents flows through unchanged.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from journey.vocabulary import NO_CONTACT, NO_CONTENT, Objective, Phase
from journey.yaml_config import load_yaml_model

_OPS: dict[str, Callable[[Any, Any], Any]] = {  # scalars or numpy arrays
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class Action(NamedTuple):
    channel: str
    content: str

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.content}"


NO_ACTION = Action(NO_CONTACT, NO_CONTENT)


class ChannelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cost: float = Field(ge=0, description="Cost of one contact, in the unit of content values.")
    consent: str | None = Field(description="Consent column the channel needs, or null for none.")
    daily_capacity: int | None = Field(default=None, ge=0)
    description: str = ""


class EligibilityRule(BaseModel):
    """`feature op value`; a missing feature makes the rule fail (eligibility must be proven)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float

    def holds(self, values: Mapping[str, float | None]) -> bool:
        observed = values.get(self.feature)
        if observed is None or observed != observed:  # missing or NaN
            return False
        return _OPS[self.op](float(observed), self.value)

    def holds_for(self, observed: np.ndarray) -> np.ndarray:
        """Vectorised `holds` over an array of the feature's values (NaN = missing fails)."""
        observed = np.asarray(observed, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return np.asarray(~np.isnan(observed) & _OPS[self.op](observed, self.value), dtype=bool)

    def __str__(self) -> str:
        return f"{self.feature} {self.op} {self.value:g}"


class ContentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Objective
    phases: list[Phase] = Field(min_length=1)
    channels: list[str] = Field(min_length=1)
    value: float = Field(ge=0)
    rules: list[EligibilityRule] = Field(default_factory=list)
    description: str = ""


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    channels: dict[str, ChannelSpec] = Field(min_length=1)
    contents: dict[str, ContentSpec] = Field(min_length=1)
    objective_weights: dict[Phase, dict[Objective, float]] = Field(default_factory=dict)
    # What one channel's consent is worth (content value unit): a contact's expected cost includes
    # P(opt-out | channel) × this, with the rate learned from the logs. 0 = opt-outs cost nothing.
    consent_value: float = Field(default=0.0, ge=0)
    # The pressure any contact puts on the relationship (attention, fatigue), added to every channel's cost:
    # a contact must be worth at least this much to be sent. 0 = only the channels' own costs.
    pressure_cost: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _check_references(self) -> Catalog:
        if NO_CONTACT in self.channels or NO_CONTENT in self.contents:
            raise ValueError(f"'{NO_CONTACT}' is reserved for 'no contact' and is always available")
        for name, content in self.contents.items():
            unknown = [c for c in content.channels if c not in self.channels]
            if unknown:
                raise ValueError(
                    f"contents.{name}.channels: unknown channel(s) {unknown}; declared: {sorted(self.channels)}"
                )
        for phase, weights in self.objective_weights.items():
            if any(w < 0 for w in weights.values()):
                raise ValueError(f"objective_weights.{phase}: weights must be >= 0")
        return self

    def objective_weight(self, phase: Phase | str, objective: Objective | str) -> float:
        """Missing entries weigh 1: a catalog without levers ranks by plain incremental value."""
        return self.objective_weights.get(Phase(phase), {}).get(Objective(objective), 1.0)

    @cached_property
    def actions(self) -> tuple[Action, ...]:
        """Every (channel, content) pair the catalog allows, in a stable order, without 'none'."""
        return tuple(Action(channel, content) for content, spec in self.contents.items() for channel in spec.channels)

    @cached_property
    def channel_names(self) -> tuple[str, ...]:
        """Decision channels including 'none', in a stable order (used to encode model inputs)."""
        return (*self.channels, NO_CONTACT)

    @cached_property
    def content_names(self) -> tuple[str, ...]:
        return (*self.contents, NO_CONTENT)

    def eligible_contents(self, phase: Phase | str) -> list[str]:
        phase = Phase(phase)
        return [name for name, spec in self.contents.items() if phase in spec.phases]


def default_catalog_path() -> Path:
    return Path(str(resources.files("journey") / "defaults" / "catalog.yaml"))


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate a catalog; None means the built-in default."""
    return load_yaml_model(path or default_catalog_path(), Catalog)
