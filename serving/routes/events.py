"""Real-time event ingestion (filled in by the real-time features work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["events"])
