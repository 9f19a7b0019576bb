"""Load the serving models from the MLflow registry by alias, with the LightGBM flavour.

A one-row `pyfunc.predict` costs milliseconds; the raw Booster on a numpy row costs ~0.1 ms, so serving keeps
the Booster and the metadata training wrote (feature order, classes, action codes). When lleaves is installed
the forests predict compiled (`serving.compiled`, 3-6× faster), the Booster still answering explanations.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from journey.scoring import TASKS, LoadedModel, ModelSet, Predictor
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


def load_task_model(
    settings: Settings, task: str, alias: str = SERVING_ALIAS, *, compile_models: bool | None = None
) -> LoadedModel | None:
    """The model version behind `alias`, or None when none is registered yet (logged, never raised).

    `compile_models`: True compiles the forest (lleaves) if it is not cached yet, False only uses a cached one;
    None follows `settings.compiled_models` ('always' compiles). See `serving.compiled`."""
    model = fetch_task_model(settings, task, alias)
    return None if model is None else with_predictor(settings, model, compile_models)


def fetch_task_model(settings: Settings, task: str, alias: str = SERVING_ALIAS) -> ServingModel | None:
    """The version behind `alias` with its LightGBM Booster, or None when none is registered yet (logged)."""
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


def with_predictor(settings: Settings, model: LoadedModel, compile_models: bool | None) -> LoadedModel:
    """`model` predicting compiled when the settings allow it and it works (see `predictor_for`)."""
    booster = getattr(model.predictor, "booster", model.predictor)
    return dataclasses.replace(
        model, predictor=predictor_for(settings, booster, model.name, model.version, compile_models)
    )


def predictor_for(settings: Settings, booster: Any, name: str, version: str, compile_models: bool | None) -> Predictor:
    """The compiled forest when settings allow and it works, else the Booster (the reason is logged)."""
    if settings.compiled_models == "off":
        return ServingBooster(booster)
    from serving.compiled import compiled_predictor

    build = _builds(settings, compile_models)
    predictor, report = compiled_predictor(booster, compiled_dir(settings, name, version), build=build)
    if predictor is None:
        level = logging.WARNING if build else logging.INFO
        log.log(level, "%s/%s predicts with the LightGBM Booster: %s", name, version, report.reason)
        return ServingBooster(booster)
    log.info("%s/%s predicts compiled (%s in %.1f s)", name, version, report.outcome, report.seconds)
    return predictor


def _builds(settings: Settings, compile_models: bool | None) -> bool:
    """Whether a load may compile a forest not cached yet (else it only uses a cached one)."""
    return compile_models if compile_models is not None else settings.compiled_models == "always"


def compiled_dir(settings: Settings, name: str, version: str) -> Path:
    return settings.root / "cache" / "compiled" / name / version


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


def load_models(settings: Settings, alias: str = SERVING_ALIAS, *, compile_models: bool | None = None) -> ModelSet:
    """All task models behind `alias`; missing ones stay None and decisions degrade gracefully.

    Forests not compiled yet are compiled side by side first (child processes, `serving.compiled.precompile`),
    then every model is loaded and checked on this thread."""
    fetched = {
        task: _or_none(settings, task, alias, partial(fetch_task_model, settings, task, alias)) for task in TASKS
    }
    ready = [model for model in fetched.values() if model is not None]
    if _builds(settings, compile_models) and settings.compiled_models != "off" and ready:
        _precompile(settings, ready)
    return ModelSet(
        **{m.task: _or_none(settings, m.task, alias, partial(_prepared, settings, m, compile_models)) for m in ready}
    )


def _precompile(settings: Settings, models: list[LoadedModel]) -> None:
    import time

    from serving.compiled import precompile

    started = time.perf_counter()
    dirs = {compiled_dir(settings, m.name, m.version): m for m in models}
    failures = precompile([(getattr(m.predictor, "booster", m.predictor), path) for path, m in dirs.items()])
    for path, reason in failures.items():
        log.warning("%s/%s could not be compiled: %s", dirs[path].name, dirs[path].version, reason)
    log.info("compiled forests ready in %.1f s", time.perf_counter() - started)


def _prepared(settings: Settings, model: LoadedModel, compile_models: bool | None) -> LoadedModel:
    prepared = with_predictor(settings, model, compile_models)
    smoke_test(prepared)
    return prepared


def _or_none(settings: Settings, task: str, alias: str, load: Callable[[], LoadedModel | None]) -> LoadedModel | None:
    """A champion that cannot be loaded must not stop serving from starting: that task falls back (logged)."""
    try:
        return load()
    except Exception:
        log.error(
            "%s@%s could not be loaded: the %s model is not served",
            settings.model_name(task),
            alias,
            task,
            exc_info=True,
        )
        return None
