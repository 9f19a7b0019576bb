"""Runtime settings, read from `PARCOURS_*` environment variables (or a `.env` file in the working directory).

Everything parcours writes lives under `home`, so several workspaces can coexist and tests run in temporary ones.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All knobs of parcours; defaults are the embedded, zero-server setup."""

    model_config = SettingsConfigDict(env_prefix="PARCOURS_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path("."), description="Workspace root for data, feature store, mlruns, logs.")

    # Feature store
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = Field(default="127.0.0.1:6379", description="host:port[,db=N] of the Redis online store.")
    feast_project: str = "parcours"
    snapshot_every_days: int = Field(default=7, ge=1, description="Cadence of offline feature snapshots.")
    feature_ttl_days: int = Field(default=400, ge=1)

    # MLflow
    mlflow_tracking_uri: str | None = Field(
        default=None, description="Default: sqlite:///<home>/mlruns/mlflow.db (artifacts under <home>/mlruns)."
    )
    model_prefix: str = "parcours"
    experiment_name: str = "parcours"

    # Labels and horizons (days)
    purchase_horizon_days: int = Field(default=30, ge=1)
    churn_horizon_days: int = Field(default=60, ge=1)
    response_window_days: int = Field(default=7, ge=1)
    active_window_days: int = Field(default=90, ge=1, description="'Active before the cutoff' for churn.")

    # Decisioning
    catalog_path: Path | None = Field(default=None, description="Action catalog YAML; default: built-in.")
    policies_path: Path | None = Field(default=None, description="Contact policies YAML; default: built-in.")
    exploration_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    seed: int = 42

    # --- features in real time, online stores (add fields for that area below this line)

    # --- model lifecycle: promotion, retraining, schedule (add fields for that area below this line)

    # --- serving operations: security, limits, reload, metrics (add fields for that area below this line)

    # --- policy evaluation (add fields for that area below this line)

    @cached_property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def feature_store_dir(self) -> Path:
        return self.root / "feature_store"

    @property
    def offline_dir(self) -> Path:
        return self.feature_store_dir / "offline"

    @property
    def mlruns_dir(self) -> Path:
        return self.root / "mlruns"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlruns_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return (self.mlruns_dir / "artifacts").as_uri()

    @property
    def decision_log_path(self) -> Path:
        return self.logs_dir / "decisions.db"

    def model_name(self, task: str) -> str:
        return f"{self.model_prefix}-{task}"
