"""Registry and training pipeline in a temporary workspace: aliases, audit trail, reload, metadata, skipping."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey.catalog import load_catalog
from journey.errors import NotReadyError
from journey.settings import Settings
from training.lgbm import ACTION_COLUMNS, LightGBMTask, encode_actions
from training.registry import alias_history, get_version, log_and_register, set_alias

FEATURES = ["recency_purchase_days", "purchases_total", "x"]


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, already-migrated MLflow SQLite store: creating one runs ~80 alembic migrations (seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def settings(tmp_path: Path, migrated_db: Path) -> Settings:
    (tmp_path / "mlruns").mkdir()
    shutil.copy(migrated_db, tmp_path / "mlruns" / "mlflow.db")
    return Settings(home=tmp_path)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "event_timestamp": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"),
            "recency_purchase_days": rng.exponential(30, n),
            "purchases_total": rng.poisson(2, n),
            "x": rng.normal(size=n),
        }
    )
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-(2 * frame["x"] - 1)))).astype(int)
    return frame


def _split(n: int) -> pd.Series:
    i = np.arange(n)
    return pd.Series(np.where(i < 0.7 * n, "train", np.where(i < 0.85 * n, "valid", "test")))


def _response_model() -> tuple[LightGBMTask, pd.DataFrame, dict]:
    catalog = load_catalog()
    rng = np.random.default_rng(0)
    X = _frame(400, 0)[FEATURES]
    X["action_channel"] = rng.choice(catalog.channel_names, len(X))
    X["action_content"] = rng.choice(catalog.content_names, len(X))
    X = encode_actions(X, catalog)
    y = (X["x"] > 0).astype(int)
    model = LightGBMTask("binary", categorical=ACTION_COLUMNS, num_boost_round=60)
    model.fit(X[:300], y[:300], X[300:], y[300:])
    metadata = {
        "parcours_schema": 1,
        "task": "response",
        "feature_names": FEATURES,
        "action_columns": {
            "action_channel": list(catalog.channel_names),
            "action_content": list(catalog.content_names),
        },
    }
    return model, X, metadata


def test_first_version_is_champion_later_ones_only_challenger(tmp_path: Path, settings: Settings) -> None:
    import mlflow
    import mlflow.lightgbm

    model, X, metadata = _response_model()
    first = log_and_register("response", model, metadata, X, settings)
    assert (first.name, first.version, first.aliases) == ("parcours-response", "1", ("champion", "challenger"))
    second = log_and_register("response", model, metadata, X, settings)
    assert (second.version, second.aliases) == ("2", ("challenger",))
    champion, challenger = (
        get_version("response", "champion", settings),
        get_version("response", "challenger", settings),
    )
    assert champion is not None and champion.version == "1" and champion.run_id == first.run_id
    assert challenger is not None and challenger.version == "2"
    assert get_version("churn", "champion", settings) is None

    history = alias_history("response", "1", settings)
    assert [(h["alias"], h["action"]) for h in history] == [
        ("challenger", "set"),
        ("champion", "set"),
        ("challenger", "removed"),
    ]
    assert all(h["who"] and h["when"].endswith("+00:00") and h["why"] for h in history)

    set_alias("response", "champion", "2", settings, reason="challenger won the comparison")
    assert get_version("response", "champion", settings).version == "2"  # type: ignore[union-attr]
    assert alias_history("response", "2", settings)[-1]["why"] == "challenger won the comparison"
    assert alias_history("response", "1", settings)[-1]["action"] == "removed"

    # Serving's path: LightGBM flavour by alias, metadata via get_model_info, numpy predict.
    uri = "models:/parcours-response@champion"
    booster = mlflow.lightgbm.load_model(uri)
    info = mlflow.models.get_model_info(uri)
    assert info.metadata == metadata
    assert info.signature.inputs.input_names() == [*FEATURES, *ACTION_COLUMNS]
    matrix = X[model.feature_names_].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(booster.predict(matrix), model.predict_proba(X))
    assert (tmp_path / "mlruns" / "mlflow.db").exists() and (tmp_path / "mlruns" / "artifacts").is_dir()


def test_metadata_must_match_the_model_inputs(settings: Settings) -> None:
    model, X, metadata = _response_model()
    with pytest.raises(ValueError, match="feature_names"):
        log_and_register("response", model, {**metadata, "feature_names": FEATURES[::-1]}, X, settings)


def test_train_all_trains_what_it_can_and_skips_the_rest(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from training import datasets, pipeline

    def fake_build(task, data, settings, catalog, max_rows=None, seed=0):
        if task == "response":
            raise NotReadyError("no logged contacts: response model skipped")
        frame = _frame(500, 1)
        return datasets.TaskDataset(task, frame, FEATURES, "label", _split(500), {"horizon_days": 60})

    monkeypatch.setattr(datasets, "build_task_dataset", fake_build)
    messages: list[str] = []
    results = pipeline.train_all(None, settings, load_catalog(), tasks=("churn", "response"), progress=messages.append)

    assert results["response"].status == "skipped" and "no logged contacts" in results["response"].message
    churn = results["churn"]
    assert churn.status == "trained" and churn.version is not None and churn.version.alias == "champion"
    assert churn.metrics["model_roc_auc"] > 0.75 and "baseline_logistic_roc_auc" in churn.metrics
    assert any(m.startswith("response: skipped") for m in messages)

    assert churn.run_id is not None
    run = mlflow.get_run(churn.run_id)
    parent_id = run.data.tags["mlflow.parentRunId"]
    assert mlflow.get_run(parent_id).info.run_name == "train"
    assert run.data.params["horizon_days"] == "60" and run.data.params["data_horizon_days"] == "60"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(churn.run_id)}
    assert {"features.json", "roc.png", "calibration.png", "lift_gain.png", "importance.png"} <= artifacts


def test_train_task_response_logs_uplift_checks_and_action_metadata(settings: Settings) -> None:
    import mlflow

    from training.datasets import TaskDataset
    from training.pipeline import train_task

    catalog = load_catalog()
    rng = np.random.default_rng(2)
    n = 900
    frame = _frame(n, 2).drop(columns="label")
    actions = list(catalog.actions)
    picked = [actions[i] for i in rng.integers(0, len(actions), n)]
    treated = rng.random(n) < 0.6
    frame["decision_id"] = [f"d{i}" for i in range(n)]
    frame["action_channel"] = [a.channel if t else "none" for a, t in zip(picked, treated, strict=True)]
    frame["action_content"] = [a.content for a in picked]
    frame["propensity"] = 0.5
    lift = np.where(frame["action_channel"] == "email", 1.5, 0.0) * (frame["x"] > 0)
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-(-1.5 + lift)))).astype(int)
    dataset = TaskDataset("response", frame, FEATURES, "label", _split(n), {})

    result = train_task("response", dataset, settings, catalog)
    assert result.status == "trained" and result.run_id is not None
    assert result.metrics["uplift_mean_email__product_recommendation"] > result.metrics.get(
        "uplift_mean_web__product_recommendation", 0.0
    )
    assert "uplift_qini" in result.metrics
    metadata = mlflow.models.get_model_info("models:/parcours-response@champion").metadata or {}
    assert metadata["feature_names"] == FEATURES
    assert metadata["action_columns"]["action_channel"] == list(catalog.channel_names)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert {"uplift_by_action.csv", "uplift_by_decile.csv", "uplift_by_decile.png"} <= artifacts
