"""What serves right now (follows the registry alias through hot reload)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from serving.deps import get_runtime, require_api_key
from serving.models import SERVING_ALIAS
from serving.runtime import Runtime
from serving.schemas import ModelOut

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)])


@router.get("/models", response_model=list[ModelOut], summary="The model versions serving decisions")
async def models(runtime: Annotated[Runtime, Depends(get_runtime)]) -> list[ModelOut]:
    return [
        ModelOut(
            task=m.task,
            name=m.name,
            version=m.version,
            alias=SERVING_ALIAS,
            run_id=m.metadata.get("mlflow_run_id"),
        )
        for m in runtime.models.loaded()
    ]
