"""MLflow wiring: one place that points MLflow at the workspace store and keeps its console output quiet.

MLflow 3 refuses a plain `file:` tracking store, so the default is a SQLite store under `<home>/mlruns` with
artifacts next to it; every training entry point calls `configure_mlflow` first, so tests in temporary
workspaces never touch a shared store.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from journey.settings import Settings

# Quiet, offline defaults; a user who exported one of these keeps their own value.
_QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_PRINT_MODEL_URLS_ON_CREATION": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}
_NOISY_LOGGERS = ("mlflow", "alembic", "alembic.runtime.migration", "lightgbm")
# (tracking URI, experiment name) -> experiment id, so repeated calls skip the store round trip.
_CONFIGURED: dict[tuple[str, str], str] = {}


def quiet_mlflow() -> None:
    """Silence MLflow's run links, migration chatter and telemetry; warnings and errors still show."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_mlflow(settings: Settings) -> str:
    """Point MLflow at the workspace store and make sure the experiment exists; returns the experiment id.

    With a SQLite store the experiment is created with its artifact location under `settings.artifact_root`,
    so artifacts never land in the current directory's `./mlruns` (MLflow's default); a tracking server keeps
    its own artifact root.
    """
    quiet_mlflow()
    import mlflow

    local_store = settings.tracking_uri.startswith("sqlite:")
    if local_store:
        Path(settings.mlruns_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    key = (settings.tracking_uri, settings.experiment_name)
    if key in _CONFIGURED:
        mlflow.set_experiment(experiment_id=_CONFIGURED[key])
        return _CONFIGURED[key]
    quiet_mlflow()  # the first store access may (re)configure MLflow's loggers
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        experiment_id = mlflow.create_experiment(
            settings.experiment_name, artifact_location=settings.artifact_root if local_store else None
        )
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    _CONFIGURED[key] = str(experiment_id)
    return str(experiment_id)
