"""Registering task models in MLflow and moving their aliases, with an audit trail.

Serving loads `models:/parcours-<task>@champion`; training only ever adds `challenger` versions, except the
very first version of a task, which also becomes `champion` so a fresh workspace can serve at once. Every
alias move is appended to the `parcours.alias_history` tag (JSON list) of the versions it touches, so "who
promoted this model, when and why" is answerable from the registry alone.
"""

from __future__ import annotations

import getpass
import json
import os
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from journey.settings import Settings
from training.lgbm import ACTION_COLUMNS, LightGBMTask
from training.tracking import configure_mlflow

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "parcours.alias_history"
SCHEMA_VERSION = 1
_HISTORY_MAX_CHARS = 90_000  # the registry caps tag values at 100k characters


@dataclass(frozen=True)
class ModelVersionRef:
    """A registered model version; `alias` is the alias it was found by (or the strongest one it got)."""

    name: str
    version: str
    run_id: str | None
    alias: str | None
    aliases: tuple[str, ...] = field(default=())

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _client(settings: Settings) -> MlflowClient:
    from mlflow import MlflowClient

    configure_mlflow(settings)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # containers without a passwd entry
        return os.environ.get("USER", "unknown")


def model_input_columns(metadata: dict[str, Any]) -> list[str]:
    """The exact column order the booster expects: features, then the action codes for the response model."""
    columns = list(metadata["feature_names"])
    if metadata.get("action_columns"):
        columns += list(metadata["action_columns"])
    return columns


def check_metadata(task: str, model: LightGBMTask, metadata: dict[str, Any]) -> None:
    """Refuse to register a model whose metadata would mislead serving (the training↔serving contract)."""
    missing = {"parcours_schema", "task", "feature_names"} - set(metadata)
    if missing:
        raise ValueError(f"model metadata lacks {sorted(missing)}")
    if metadata["task"] != task:
        raise ValueError(f"metadata task {metadata['task']!r} != {task!r}")
    if model_input_columns(metadata) != model.feature_names_:
        raise ValueError("metadata feature_names (+ action_columns) must equal the model input columns in order")
    if task == "response" and tuple(metadata.get("action_columns", {})) != ACTION_COLUMNS:
        raise ValueError(f"response metadata needs action_columns {ACTION_COLUMNS}")
    if task == "phase" and list(metadata.get("classes", [])) != [str(c) for c in model.classes_]:
        raise ValueError("phase metadata classes must match the model's class order")


def _pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's requirement inference would spawn a subprocess per logged model."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("lightgbm", "numpy", "pandas", "scikit-learn")]


def log_and_register(
    task: str,
    model: LightGBMTask,
    metadata: dict[str, Any],
    input_example: pd.DataFrame,
    settings: Settings,
) -> ModelVersionRef:
    """Log the booster with the LightGBM flavour in the active run (or a new one), register it as a new
    version with alias `challenger`, and make it `champion` too if the task has none yet."""
    import mlflow
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    check_metadata(task, model, metadata)
    client = _client(settings)
    example = model.input_frame(input_example.head(5))
    with warnings.catch_warnings():  # "integer columns cannot hold NaN": action codes are never missing
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, model.predict_proba(example))
    name = settings.model_name(task)
    own_run = mlflow.active_run() is None
    run = mlflow.start_run(run_name=f"register-{task}") if own_run else mlflow.active_run()
    assert run is not None
    try:
        info = mlflow.lightgbm.log_model(
            model.booster_,
            name="model",
            signature=signature,
            input_example=example,
            metadata=metadata,
            registered_model_name=name,
            pip_requirements=_pip_requirements(),
        )
    finally:
        if own_run:
            mlflow.end_run()
    version = str(info.registered_model_version)
    client.set_model_version_tag(name, version, "parcours.task", task)
    client.set_model_version_tag(name, version, "parcours.schema", str(metadata["parcours_schema"]))
    aliases = [CHALLENGER]
    set_alias(task, CHALLENGER, version, settings, reason="new version from a training run")
    if get_version(task, CHAMPION, settings) is None:
        set_alias(task, CHAMPION, version, settings, reason="first registered version (bootstrap)")
        aliases.insert(0, CHAMPION)
    return ModelVersionRef(name, version, run.info.run_id, aliases[0], tuple(aliases))


def get_version(task: str, alias: str, settings: Settings) -> ModelVersionRef | None:
    """The version behind `alias`, or None when the model or the alias does not exist yet."""
    from mlflow.exceptions import MlflowException

    client = _client(settings)
    try:
        mv = client.get_model_version_by_alias(settings.model_name(task), alias)
    except MlflowException:
        return None
    return ModelVersionRef(mv.name, str(mv.version), mv.run_id, alias, tuple(mv.aliases or ()))


def alias_history(task: str, version: str | int, settings: Settings) -> list[dict[str, Any]]:
    """Alias moves recorded on one version, oldest first."""
    client = _client(settings)
    tags = client.get_model_version(settings.model_name(task), str(version)).tags
    history: list[dict[str, Any]] = json.loads(tags.get(HISTORY_TAG, "[]"))
    return history


def _append_history(client: MlflowClient, name: str, version: str, entry: dict[str, Any]) -> None:
    history: list[dict[str, Any]] = json.loads(client.get_model_version(name, version).tags.get(HISTORY_TAG, "[]"))
    history.append(entry)
    text = json.dumps(history)
    while len(text) > _HISTORY_MAX_CHARS and len(history) > 1:  # keep the most recent moves
        history.pop(0)
        text = json.dumps(history)
    client.set_model_version_tag(name, version, HISTORY_TAG, text)


def set_alias(task: str, alias: str, version: str | int, settings: Settings, reason: str) -> None:
    """Point `alias` at `version` and record the move (who, when, why) on it and on the version it left."""
    client = _client(settings)
    name, version = settings.model_name(task), str(version)
    previous = get_version(task, alias, settings)
    client.set_registered_model_alias(name, alias, version)
    move = {
        "alias": alias,
        "who": _who(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "why": reason,
    }
    from_version = previous.version if previous else None
    _append_history(client, name, version, {**move, "action": "set", "previous_version": from_version})
    if previous is not None and previous.version != version:
        _append_history(client, name, previous.version, {**move, "action": "removed", "next_version": version})
