"""What serves right now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from serving.deps import get_runtime
from serving.runtime import Runtime
from serving.schemas import ModelOut

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=list[ModelOut], summary="The model versions serving decisions")
async def models(runtime: Annotated[Runtime, Depends(get_runtime)]) -> list[ModelOut]:
    return [ModelOut(task=m.task, name=m.name, version=m.version) for m in runtime.models.loaded()]
