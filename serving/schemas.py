"""Request and response bodies of the HTTP API; unknown fields are refused (422), never ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from journey.logbook import FEEDBACK_OUTCOMES

CustomerId = str
MAX_ALTERNATIVES = 5

Outcome = Literal["delivered", "opened", "clicked", "converted", "ignored", "unsubscribed"]
assert set(FEEDBACK_OUTCOMES) == set(Outcome.__args__)  # type: ignore[attr-defined]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestContext(Strict):
    """What the caller knows about the moment of the request."""

    channel: str | None = Field(default=None, max_length=64, description="Touchpoint the customer is on now.")


class NextBestActionRequest(Strict):
    customer_id: CustomerId = Field(min_length=1, max_length=128, examples=["c000042"])
    context: RequestContext | None = None


class ActionOut(BaseModel):
    channel: str
    content: str
    objective: str
    score: float = Field(description="Expected incremental value: uplift × value × objective weight − cost.")
    uplift: float
    p_response: float
    p_baseline: float
    value: float
    objective_weight: float
    cost: float


class PhaseOut(BaseModel):
    label: str
    probabilities: dict[str, float]


class ExclusionOut(BaseModel):
    channel: str
    content: str
    reason: str


class DecisionOut(BaseModel):
    decision_id: str
    customer_id: str
    ts: datetime
    phase: PhaseOut
    churn_risk: float | None
    purchase_propensity: float | None
    action: ActionOut
    alternatives: list[ActionOut] = Field(description=f"Next best actions, ranked (at most {MAX_ALTERNATIVES}).")
    excluded: list[ExclusionOut] = Field(description="Actions ruled out, with the rule that excluded them.")
    reasons: list[str]
    propensity: float = Field(description="Probability with which this action was chosen (for off-policy evaluation).")
    explored: bool
    model_versions: dict[str, str]
    cold_start: bool = Field(description="True when the customer is unknown to the feature store.")
    degraded: bool = Field(default=False, description="True when features could not be read: safe default answer.")


class FeedbackIn(Strict):
    decision_id: str = Field(min_length=1, max_length=64)
    outcome: Outcome
    value: float | None = Field(default=None, ge=0, le=1e9, description="Revenue or score attached to the outcome.")
    ts: datetime | None = Field(default=None, description="When the outcome happened (default: now).")


class FeedbackOut(BaseModel):
    feedback_id: int
    decision_id: str
    status: Literal["recorded"] = "recorded"


class ModelOut(BaseModel):
    task: str
    name: str
    version: str


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
