"""Real-time event ingestion: `POST /v1/events` takes one event or a batch in the data contract's `events` format."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.deps import get_runtime, require_api_key
from serving.ingest import IngestService, InvalidEvents
from serving.runtime import Runtime

MAX_EVENTS = 1000
_BUILD = threading.Lock()

router = APIRouter(prefix="/v1", tags=["events"], dependencies=[Depends(require_api_key)])


class EventIn(BaseModel):
    """One row of the `events` table (docs/data-contract.md); the contract's rules are checked after parsing."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=128, examples=["c000042"])
    ts: str | None = Field(
        default=None, max_length=64, description="ISO 8601 (no zone = UTC); default: when the server receives it."
    )
    event_type: str = Field(min_length=1, max_length=64, examples=["add_to_cart"])
    channel: str | None = Field(default=None, max_length=64, description="Default: `other`.")
    content: str | None = Field(default=None, max_length=512)
    value: float | None = Field(default=None, allow_inf_nan=False, description="Purchase amount or survey score.")


class EventsIn(BaseModel):
    """`{"events": [...]}` with 1 to 1,000 events, or one bare event object."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data: Any) -> Any:
        return {"events": [data]} if isinstance(data, dict) and "events" not in data else data


class EventsOut(BaseModel):
    accepted: int = Field(description="Events appended durably to the ingested-event log.")
    customers: int = Field(description="Distinct customers in the request.")
    customers_refreshed: int = Field(description="Customers whose online features were recomputed as of now.")
    snapshot_ts: datetime | None = Field(description="Time the refreshed features are stamped with.")
    refresh_error: str | None = Field(
        default=None, description="Why features were not refreshed (the events are stored all the same)."
    )


@router.post(
    "/events",
    response_model=EventsOut,
    status_code=202,
    summary="Ingest customer events; the next decision sees them",
    responses={503: {"description": "The event log cannot be written: nothing was stored."}},
)
def ingest_events(
    body: EventsIn, request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> EventsOut | JSONResponse:
    """422 names the item, the field and the rule (nothing is stored then); 202 once every event is durable."""
    now = runtime.clock()
    raw = pd.DataFrame([e.model_dump() for e in body.events])
    raw["ts"] = raw["ts"].where(raw["ts"].notna(), now.isoformat())
    try:
        done = _service(request, runtime).ingest(raw, now)
    except InvalidEvents as exc:
        detail = [
            {"loc": ["body", "events", p.index, p.field], "msg": p.rule, "type": "data_contract"} for p in exc.problems
        ]
        return JSONResponse(status_code=422, content={"detail": detail})
    except (OSError, sqlite3.Error) as exc:  # the log could not be opened or written: nothing acknowledged
        raise HTTPException(status_code=503, detail=f"event log unavailable, nothing stored: {exc}") from exc
    return EventsOut(
        accepted=done.accepted,
        customers=done.customers,
        customers_refreshed=done.refreshed,
        snapshot_ts=done.snapshot_ts.to_pydatetime() if done.snapshot_ts is not None else None,
        refresh_error=done.refresh_error,
    )


def _service(request: Request, runtime: Runtime) -> IngestService:
    """Built on first use and cached on app.state (the runtime and the app factory stay untouched)."""
    service: IngestService | None = getattr(request.app.state, "ingest", None)
    if service is None:
        with _BUILD:
            service = getattr(request.app.state, "ingest", None)
            if service is None:
                service = IngestService(runtime.settings)
                request.app.state.ingest = service
    return service
