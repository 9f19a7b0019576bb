"""Request and response bodies of the HTTP API; unknown fields are refused (422), never ignored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from journey.logbook import FEEDBACK_OUTCOMES

MAX_ALTERNATIVES = 5
MAX_BATCH = 500
# pandas timestamps (nanoseconds) cover 1677-2262; outcomes are dated well within this
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


def _text(value: str) -> str:
    """Refuse strings that cannot be stored or hashed as UTF-8 (lone surrogates) or hold control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid UTF-8 text (no lone surrogates)") from exc
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _in_range(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not EARLIEST <= aware <= LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


CustomerId = Annotated[str, Field(min_length=1, max_length=128, examples=["c000042"]), AfterValidator(_text)]

Outcome = Literal["delivered", "opened", "clicked", "converted", "ignored", "unsubscribed"]
assert set(FEEDBACK_OUTCOMES) == set(Outcome.__args__)  # type: ignore[attr-defined]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestContext(Strict):
    """What the caller knows about the moment of the request."""

    channel: Annotated[str, AfterValidator(_text)] | None = Field(
        default=None, max_length=64, description="Touchpoint the customer is on now."
    )


class NextBestActionRequest(Strict):
    customer_id: CustomerId
    context: RequestContext | None = None
    explain: bool = Field(default=False, description="Add the models' top feature contributions (slower).")


class BatchItem(Strict):
    customer_id: CustomerId
    context: RequestContext | None = None


class NextBestActionsRequest(Strict):
    """Several customers in one call (e.g. a page of an outbound campaign); logged in one durable append.

    No `explain` here: contributions cost two extra model calls per customer (ask for them one at a time)."""

    customers: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


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


class ContributionOut(BaseModel):
    feature: str
    value: float | None
    contribution: float = Field(description="Signed contribution to the model's raw score (log-odds).")


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
    contributions: dict[str, list[ContributionOut]] = Field(
        default_factory=dict, description="With `explain`: top features behind the phase, response and uplift."
    )


class DecisionsOut(BaseModel):
    decisions: list[DecisionOut] = Field(description="One decision per requested customer, in request order.")


class FeedbackIn(Strict):
    decision_id: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_text)]
    outcome: Outcome
    value: float | None = Field(
        default=None, ge=0, le=1e9, allow_inf_nan=False, description="Revenue or score attached to the outcome."
    )
    ts: Annotated[datetime | None, AfterValidator(_in_range)] = Field(
        default=None, description="When the outcome happened (default: now; naive times are UTC)."
    )


class FeedbackOut(BaseModel):
    feedback_id: int
    decision_id: str
    status: Literal["recorded"] = "recorded"


class ModelOut(BaseModel):
    task: str
    name: str
    version: str
    alias: str = Field(description="The registry alias serving follows.")
    run_id: str | None = Field(default=None, description="The MLflow run that trained this version.")


class ErrorOut(BaseModel):
    detail: str | list[dict[str, object]]


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
