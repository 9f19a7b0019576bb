"""Load the serving models from the MLflow registry by alias, with the LightGBM flavour.

A one-row `pyfunc.predict` costs milliseconds; the raw Booster on a numpy row costs ~0.1 ms, so serving keeps
the Booster and the metadata training wrote (feature order, classes, action codes).
"""

from __future__ import annotations

import logging

from journey.scoring import TASKS, LoadedModel, ModelSet
from journey.settings import Settings

log = logging.getLogger(__name__)

SERVING_ALIAS = "champion"


def load_task_model(settings: Settings, task: str, alias: str = SERVING_ALIAS) -> LoadedModel | None:
    """The model version behind `alias`, or None when none is registered yet (logged, never raised)."""
    import mlflow
    import mlflow.lightgbm
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(settings.tracking_uri)
    name = settings.model_name(task)
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        log.warning("no %s@%s in the registry: the %s model is not served", name, alias, task)
        return None
    uri = f"models:/{name}/{version.version}"
    info = mlflow.models.get_model_info(uri)
    metadata = dict(info.metadata or {})
    booster = mlflow.lightgbm.load_model(uri)
    return LoadedModel(
        task=task,
        name=name,
        version=str(version.version),
        predictor=booster,
        feature_names=tuple(metadata.get("feature_names") or booster.feature_name()),
        metadata=metadata,
    )


def load_models(settings: Settings, alias: str = SERVING_ALIAS) -> ModelSet:
    """All task models behind `alias`; missing ones stay None and decisions degrade gracefully."""
    loaded = {task: load_task_model(settings, task, alias) for task in TASKS}
    return ModelSet(**loaded)
