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
    event_log_path: Path | None = Field(
        default=None, description="Ingested-event log (SQLite, WAL); default: <home>/logs/events.db."
    )
    ingest_max_future_seconds: float = Field(
        default=300.0, ge=0.0, description="How far ahead of the server clock an ingested event's ts may be (skew)."
    )
    online_layout: Literal["packed", "stock"] = Field(
        default="packed",
        description="packed: one exact compact vector per customer (parcours' Feast plugin, one read per customer); "
        "stock: Feast's built-in per-feature rows (for comparison).",
    )
    redis_timeout_s: float = Field(default=1.0, gt=0, description="Socket timeout of online reads from Redis.")
    materialize_batch_rows: int = Field(default=100_000, ge=1, description="Customers packed and written per batch.")

    # --- model lifecycle: promotion, retraining, schedule (add fields for that area below this line)
    promotion_margin: float = Field(
        default=0.005, ge=0.0, description="Primary-metric gain a challenger needs over the champion."
    )
    promotion_tolerance: float = Field(
        default=0.01, ge=0.0, description="Largest regression allowed on any other metric when promoting."
    )
    backtest_folds: int = Field(default=3, ge=0, description="Rolling out-of-time folds per task (0 = off).")
    retrain_cron: str = Field(default="0 3 * * *", description="`parcours schedule` default (5 fields, UTC).")

    # --- serving operations: security, limits, reload, metrics (add fields for that area below this line)
    api_keys: str = Field(
        default="",
        description="Comma-separated hashed API keys ('sha256:<hex>'; `parcours`'s serving.security.hash_key makes "
        "one). Empty: no authentication, and the server refuses to bind anything but loopback.",
    )
    max_body_kb: int = Field(default=256, ge=1, description="Request bodies above this many KiB get 413.")
    model_reload_seconds: float = Field(
        default=30.0, ge=0, description="How often serving polls the registry for a moved `champion` alias (0: never)."
    )
    log_format: Literal["json", "text"] = Field(default="json", description="Serving logs: JSON lines or plain text.")
    access_log: bool = Field(default=True, description="One structured log line per HTTP request (no personal data).")
    compiled_models: Literal["batch", "always", "off"] = Field(
        default="batch",
        description="LightGBM forests compiled with lleaves (cached under <home>/cache/compiled): 'batch' compiles "
        "for `parcours score` and lets serving use what is cached; 'always' also compiles when serving loads a "
        "model (startup, reload); 'off' predicts with the Booster everywhere (the test suite's in-process runs: "
        "see tests/conftest.py).",
    )

    # --- policy evaluation (add fields for that area below this line)
    uplift_method: Literal["response_effect", "s_learner"] = Field(
        default="response_effect",
        description="How the response model estimates uplift: 'response_effect' = P(respond | customer, action) "
        "from LightGBM × the content's effect per response (randomized logs, shrunk; training/response_effect.py); "
        "'s_learner' = P(goal | action) − P(goal | none) from one LightGBM. Without enough logged responses "
        "(opens, clicks…) the S-learner is trained whatever this says.",
    )
    response_label: Literal["goal", "engagement"] = Field(
        default="goal",
        description="Response-model label for connection/consideration contents: 'goal' counts their goal events "
        "(sign-up, referral, product view); 'engagement' also counts a click or open (inflates their uplift).",
    )

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
