"""Outcomes of decisions, recorded durably for the next training."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException

from journey.logbook import UnknownDecisionError
from serving.deps import get_runtime, require_api_key
from serving.runtime import Runtime
from serving.schemas import FeedbackIn, FeedbackOut

router = APIRouter(prefix="/v1", tags=["feedback"], dependencies=[Depends(require_api_key)])


@router.post("/feedback", response_model=FeedbackOut, status_code=201, summary="Record the outcome of a decision")
async def feedback(body: FeedbackIn, runtime: Annotated[Runtime, Depends(get_runtime)]) -> FeedbackOut:
    """Acknowledged (201) only once durable; 404 when the decision id was never logged."""
    ts = pd.Timestamp(body.ts) if body.ts else runtime.clock()
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    try:
        feedback_id = await runtime.record_feedback(body.decision_id, body.outcome, ts, body.value)
    except UnknownDecisionError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return FeedbackOut(feedback_id=feedback_id, decision_id=body.decision_id)
