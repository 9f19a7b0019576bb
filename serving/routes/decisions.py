"""The next-best-action endpoints (the hottest path: dependencies are async, so no threadpool hop per request)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends

from journey.decision import ActionScore, Decision
from serving.deps import get_runtime, require_api_key
from serving.runtime import Runtime
from serving.schemas import (
    MAX_ALTERNATIVES,
    MAX_BATCH,
    ActionOut,
    ContributionOut,
    DecisionOut,
    DecisionsOut,
    ExclusionOut,
    NextBestActionRequest,
    NextBestActionsRequest,
    PhaseOut,
)

router = APIRouter(prefix="/v1", tags=["decisions"], dependencies=[Depends(require_api_key)])


@router.post("/next-best-action", response_model=DecisionOut, summary="Decide the next best channel and content")
async def next_best_action(
    request: NextBestActionRequest, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> DecisionOut:
    """Scores every eligible, allowed action by expected incremental value and logs the decision durably."""
    decision, degraded = await runtime.decide(request.customer_id, request.explain)
    return to_out(decision, degraded)


@router.post(
    "/next-best-actions",
    response_model=DecisionsOut,
    summary=f"Decide for up to {MAX_BATCH} customers in one call",
)
async def next_best_actions(
    request: NextBestActionsRequest, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> DecisionsOut:
    """Same decision as `/v1/next-best-action` for each customer, in request order, logged in one durable append."""
    decided = await runtime.decide_many([c.customer_id for c in request.customers])
    return DecisionsOut(decisions=[to_out(decision, degraded) for decision, degraded in decided])


def to_out(decision: Decision, degraded: bool) -> DecisionOut:
    return DecisionOut(
        decision_id=decision.decision_id,
        customer_id=decision.customer_id,
        ts=decision.ts.to_pydatetime(),
        phase=PhaseOut(label=decision.phase, probabilities=decision.phase_probabilities),
        churn_risk=decision.churn_risk,
        purchase_propensity=decision.purchase_propensity,
        action=_action(decision.action),
        alternatives=[_action(a) for a in decision.alternatives[:MAX_ALTERNATIVES]],
        excluded=[ExclusionOut(channel=e.channel, content=e.content, reason=e.reason) for e in decision.excluded],
        reasons=decision.reasons,
        propensity=decision.propensity,
        explored=decision.explored,
        model_versions=decision.model_versions,
        cold_start=decision.cold_start,
        degraded=degraded,
        contributions={
            model: [
                ContributionOut(feature=c.feature, value=_finite(c.value), contribution=c.contribution) for c in top
            ]
            for model, top in getattr(decision, "contributions", {}).items()
        },
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _action(score: ActionScore) -> ActionOut:
    return ActionOut(
        channel=score.channel,
        content=score.content,
        objective=score.objective,
        score=score.score,
        uplift=score.uplift,
        p_response=score.p_response,
        p_baseline=score.p_baseline,
        value=score.value,
        objective_weight=score.objective_weight,
        cost=score.cost,
    )
