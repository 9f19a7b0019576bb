"""Load the serving models from the MLflow registry by alias, with the LightGBM flavour.

A one-row `pyfunc.predict` costs milliseconds; the raw Booster on a numpy row costs ~0.1 ms, so serving keeps
the Booster and the metadata training wrote (feature order, classes, action codes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from journey.scoring import TASKS, LoadedModel, ModelSet
from journey.settings import Settings

log = logging.getLogger(__name__)

SERVING_ALIAS = "champion"
SMALL_INPUT_ROWS = 1024
MAX_LAYOUTS = 16


class ServingBooster:
    """A LightGBM Booster whose small predictions run on one thread.

    LightGBM predicts with every OpenMP thread by default: on a busy 2-core machine one single-row call then costs
    ~25 ms of thread wake-ups instead of ~0.05 ms. Requests score a handful of rows, so they stay on one thread
    (uvicorn workers give the parallelism); large batches keep OpenMP. Anything else is the Booster's own.
    """

    def __init__(self, booster: Any, small_rows: int = SMALL_INPUT_ROWS) -> None:
        self.booster = booster
        self.small_rows = small_rows

    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        if len(data) <= self.small_rows:
            kwargs.setdefault("num_threads", 1)
        return np.asarray(self.booster.predict(data, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)


@dataclass(frozen=True)
class ServingModel(LoadedModel):
    """A LoadedModel whose `matrix` maps frame columns to model inputs by cached positions.

    Same result as `LoadedModel.matrix` (missing features are NaN) without a pandas `reindex` per model per
    request: serving frames have one of a few column layouts (known customer, cold start), each resolved once.
    """

    _positions: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        columns = tuple(features.columns)
        positions = self._positions.get(columns)
        if positions is None:
            positions = features.columns.get_indexer(pd.Index(self.feature_names))
            if len(self._positions) < MAX_LAYOUTS:
                self._positions[columns] = positions
        try:
            values = features.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # non-numeric columns (e.g. ids in a batch frame): the general path
            return super().matrix(features)
        out = np.full((len(features), len(positions)), np.nan)
        present = positions >= 0
        out[:, present] = values[:, positions[present]]
        return out


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
    metadata = {**(info.metadata or {}), "mlflow_run_id": version.run_id}
    booster = mlflow.lightgbm.load_model(uri)
    return ServingModel(
        task=task,
        name=name,
        version=str(version.version),
        predictor=ServingBooster(booster),
        feature_names=tuple(metadata.get("feature_names") or booster.feature_name()),
        metadata=metadata,
    )


def champion_version(settings: Settings, task: str, alias: str = SERVING_ALIAS) -> str | None:
    """The version number behind `alias` (one registry query), or None when the alias is not set."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(settings.model_name(task), alias).version)
    except MlflowException:
        return None


def smoke_test(model: LoadedModel) -> None:
    """Raise unless the model predicts on a row of the width serving will feed it (all missing values).

    A version that cannot score must never replace the one serving.
    """
    width = len(model.feature_names) + (2 if model.task == "response" else 0)
    expected = getattr(model.predictor, "num_feature", None)
    if callable(expected) and int(expected()) != width:
        raise ValueError(f"{model.name}/{model.version}: the booster takes {expected()} inputs, metadata says {width}")
    out = np.asarray(model.predict(np.full((1, width), np.nan)))
    if out.size == 0 or not np.all(np.isfinite(out)):
        raise ValueError(f"{model.name}/{model.version}: non-finite prediction on a smoke-test row")


def load_models(settings: Settings, alias: str = SERVING_ALIAS) -> ModelSet:
    """All task models behind `alias`; missing ones stay None and decisions degrade gracefully."""
    return ModelSet(**{task: _load_or_none(settings, task, alias) for task in TASKS})


def _load_or_none(settings: Settings, task: str, alias: str) -> LoadedModel | None:
    """A champion that cannot be loaded must not stop serving from starting: that task falls back (logged)."""
    try:
        model = load_task_model(settings, task, alias)
        if model is not None:
            smoke_test(model)
        return model
    except Exception:
        log.error(
            "%s@%s could not be loaded: the %s model is not served",
            settings.model_name(task),
            alias,
            task,
            exc_info=True,
        )
        return None
