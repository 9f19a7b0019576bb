"""Model lifecycle on a real workspace (Feast, MLflow, LightGBM): train again, compare, promote, history,
the retrain job (success, idempotence, failures, lock), the MLflow UI, and a bare transaction log."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from journey.settings import Settings
from parcours.cli import app
from parcours.jobs.retrain import RetrainBusyError, RetrainOptions, retrain_lock, run_retrain
from tests.integration.conftest import Workspace
from training.promotion import alias_moves, champion_at, decide
from training.registry import ModelVersionRef, alias_history, get_version, set_alias

pytestmark = pytest.mark.integration
MAX_ROWS = "3000"


@pytest.fixture(autouse=True)
def _restore_home(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--home` sets PARCOURS_HOME for the process; put it back after each test."""
    monkeypatch.setenv("PARCOURS_HOME", str(workspace.home))


def _champion(task: str, settings: Settings) -> str | None:
    ref = get_version(task, "champion", settings)
    return ref.version if ref else None


def _version(task: str, alias: str, settings: Settings) -> ModelVersionRef:
    ref = get_version(task, alias, settings)
    assert ref is not None, f"{task}@{alias} is missing"
    return ref


def _experiment_id(client: MlflowClient, settings: Settings) -> str:
    experiment = client.get_experiment_by_name(settings.experiment_name)
    assert experiment is not None
    return str(experiment.experiment_id)


# ------------------------------------------------------------------------------- train twice, compare, promote
def test_train_again_compare_and_promote(workspace: Workspace) -> None:
    home, settings = str(workspace.home), workspace.settings
    before = {t: _champion(t, settings) for t in ("churn", "purchase")}
    assert all(before.values()), "the demo registers a champion per task"
    result = CliRunner().invoke(
        app, ["train", "--task", "churn", "--task", "purchase", "--max-rows", MAX_ROWS, "--home", home]
    )
    assert result.exit_code == 0, result.output
    challengers = {t: _version(t, "challenger", settings) for t in before}
    for task, ref in challengers.items():
        assert ref.version != before[task]
        assert _champion(task, settings) == before[task]  # training never moves champion

    # compare: same holdout, both models, logged in MLflow with overlaid plots
    result = CliRunner().invoke(app, ["compare", "--task", "purchase", "--home", home])
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output and f"challenger v{challengers['purchase'].version}" in result.output
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    runs = client.search_runs(
        [_experiment_id(client, settings)],
        "tags.`parcours.kind` = 'compare' and tags.`parcours.task` = 'purchase'",
    )
    assert runs, "a comparison run is logged"
    metrics = runs[0].data.metrics
    assert {"a_roc_auc", "b_roc_auc", "a_brier", "b_brier"} <= set(metrics)
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"roc.png", "calibration.png", "comparison.csv"} <= artifacts

    # promote: the registry follows the pure rule on the same metrics
    from parcours import pipelines
    from training.compare import compare_models

    catalog = pipelines.catalog_for(settings)
    data = pipelines.load_usable(workspace.home / "data" / "demo", settings, catalog)
    comparison = compare_models("purchase", data, settings, catalog, log_run=False)
    expected = decide("purchase", comparison.a.metrics, comparison.b.metrics, comparison.b.sanity)
    result = CliRunner().invoke(app, ["promote", "--task", "purchase", "--home", home])
    assert result.exit_code == 0, result.output
    after = _champion("purchase", settings)
    assert after == (challengers["purchase"].version if expected.promote else before["purchase"])

    # forced promotion needs a reason, and records it
    result = CliRunner().invoke(app, ["promote", "--task", "churn", "--force", "--home", home])
    assert result.exit_code != 0 and "--reason" in result.output
    moment = pd.Timestamp.now(tz="UTC")
    time.sleep(1.1)  # history timestamps have one-second resolution
    result = CliRunner().invoke(
        app, ["promote", "--task", "churn", "--force", "--reason", "integration test", "--home", home]
    )
    assert result.exit_code == 0, result.output
    new, old = challengers["churn"].version, str(before["churn"])
    assert _champion("churn", settings) == new
    set_entry = [h for h in alias_history("churn", new, settings) if h["alias"] == "champion"][-1]
    assert set_entry["action"] == "set" and "integration test" in set_entry["why"] and set_entry["who"]
    assert set_entry["previous_version"] == old
    removed = [h for h in alias_history("churn", old, settings) if h["alias"] == "champion"][-1]
    assert removed["action"] == "removed" and removed["next_version"] == new

    # which model was champion when
    assert champion_at("churn", moment, settings) == old
    assert champion_at("churn", pd.Timestamp.now(tz="UTC"), settings) == new
    assert champion_at("churn", "2000-01-01", settings) is None
    assert (alias_moves("churn", settings)["alias"] == "champion").sum() >= 3
    result = CliRunner().invoke(
        app, ["models", "history", "--task", "churn", "--at", moment.strftime("%Y-%m-%dT%H:%M:%S"), "--home", home]
    )
    assert result.exit_code == 0, result.output
    assert "champion at" in result.output and f"= v{old}" in result.output


# ------------------------------------------------------------------------------------------- the retrain job
def _options(workspace: Workspace, force: bool = False) -> RetrainOptions:
    return RetrainOptions(
        data_dir=workspace.home / "data" / "demo", tasks=("purchase",), max_rows=int(MAX_ROWS), force=force
    )


def test_retrain_failure_when_training_crashes_leaves_champion_and_reports(workspace: Workspace) -> None:
    settings = workspace.settings
    before = _champion("purchase", settings)
    other = _version("purchase", "challenger", settings)

    def crash(*args: object) -> dict:
        # move the champion first, as a half-done promotion would, then fail
        set_alias("purchase", "champion", other.version, settings, reason="test: half-done move")
        raise RuntimeError("injected training crash")

    report = run_retrain(_options(workspace, force=True), settings, train=crash)
    assert report.status == "failed" and report.exit_code == 1
    assert "injected training crash" in (report.error or "")
    assert _champion("purchase", settings) == before
    if other.version != before:
        assert report.restored
    payload = json.loads(Path(report.report_path or "").read_text())
    assert payload["status"] == "failed" and "Traceback" in payload["traceback"]
    assert Path(report.report_path or "").with_suffix(".txt").read_text().startswith("retrain failed")


def test_retrain_missing_data_dir_exits_non_zero(workspace: Workspace, tmp_path: Path) -> None:
    before = _champion("purchase", workspace.settings)
    result = CliRunner().invoke(
        app, ["retrain", "--data", str(tmp_path / "nowhere"), "--task", "purchase", "--home", str(workspace.home)]
    )
    assert result.exit_code == 1, result.output
    assert "failed" in result.output and "missing" in result.output
    assert _champion("purchase", workspace.settings) == before


def test_retrain_lock_refuses_a_second_run(workspace: Workspace) -> None:
    before = _champion("purchase", workspace.settings)
    with retrain_lock(workspace.settings):
        with pytest.raises(RetrainBusyError, match="another retrain is running"):
            run_retrain(_options(workspace), workspace.settings)
        result = CliRunner().invoke(app, ["retrain", "--task", "purchase", "--home", str(workspace.home)])
        assert result.exit_code == 3
        assert "another retrain is running" in result.output
    assert _champion("purchase", workspace.settings) == before


def test_retrain_succeeds_then_is_idempotent(workspace: Workspace) -> None:
    settings = workspace.settings
    home = str(workspace.home)
    versions_before = _version("purchase", "challenger", settings)
    result = CliRunner().invoke(
        app, ["retrain", "--task", "purchase", "--max-rows", MAX_ROWS, "--force", "--home", home]
    )
    assert result.exit_code == 0, result.output
    reports = sorted((workspace.home / "reports").glob("retrain-*.json"), key=lambda p: p.stat().st_mtime_ns)
    payload = json.loads(reports[-1].read_text())
    assert payload["status"] == "succeeded"
    entry = payload["tasks"]["purchase"]
    challenger = _version("purchase", "challenger", settings)
    assert challenger.version != versions_before.version
    assert entry["version"] == challenger.version
    promotion = entry["promotion"]
    assert _champion("purchase", settings) == (
        challenger.version if promotion["promote"] else promotion["champion_before"]
    )
    assert {"champion", "challenger"} <= set(entry["comparison"])
    # same data again: nothing retrained, nothing moved
    champion = _champion("purchase", settings)
    result = CliRunner().invoke(app, ["retrain", "--task", "purchase", "--max-rows", MAX_ROWS, "--home", home])
    assert result.exit_code == 0, result.output
    assert "up-to-date" in result.output
    assert _version("purchase", "challenger", settings).version == challenger.version
    assert _champion("purchase", settings) == champion


# ---------------------------------------------------------------------------------------------------- the UI
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ui_serves_the_workspace_store_on_loopback_and_stops(workspace: Workspace) -> None:
    port = _free_port()
    env = {**os.environ, "PARCOURS_HOME": str(workspace.home)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from parcours.cli import run; run()", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, body = time.monotonic() + 120, b""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    assert response.read().strip() == b"OK"
                break
            except OSError:
                time.sleep(1)
        assert process.poll() is None, process.stderr.read().decode()[-2000:] if process.stderr else ""
        query = (
            f"{base}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name={workspace.settings.experiment_name}"
        )
        with urllib.request.urlopen(query, timeout=10) as response:
            body = response.read()
        assert json.loads(body)["experiment"]["name"] == workspace.settings.experiment_name  # this workspace's store
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the MLflow server (its own process group) is stopped with it
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.5)
    else:
        pytest.fail(f"the MLflow UI still listens on port {port} after `parcours ui` was stopped")


# ---------------------------------------------------------------------------------------- bring your own data
def test_bare_transaction_log_trains_everything_but_response(workspace: Workspace, tmp_path: Path) -> None:
    source = workspace.home / "data" / "demo"
    data_dir = tmp_path / "shop"
    data_dir.mkdir()
    customers = pd.read_parquet(source / "customers.parquet")
    events = pd.read_parquet(source / "events.parquet")
    purchases = events[events["event_type"].isin(["purchase", "store_purchase"])]
    purchases = purchases[["customer_id", "ts", "event_type", "channel", "value"]]
    customers[["customer_id", "signup_ts"]].to_parquet(data_dir / "customers.parquet", index=False)
    purchases.to_parquet(data_dir / "events.parquet", index=False)
    as_of = (purchases["ts"].max() - pd.Timedelta(days=10)).floor("D")
    home = tmp_path / "home"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(data_dir),
            "--as-of",
            as_of.strftime("%Y-%m-%d"),
            "--purchase-horizon-days",
            "14",
            "--churn-horizon-days",
            "21",
            "--max-rows",
            MAX_ROWS,
            "--home",
            str(home),
        ],
        env={"PARCOURS_HOME": str(home)},
    )
    assert result.exit_code == 0, result.output
    settings = Settings(home=home)
    for task in ("phase", "churn", "purchase"):
        assert _champion(task, settings) is not None, f"{task} trained on a bare transaction log"
    assert _champion("response", settings) is None
    # nothing at or after --as-of was used: features, cutoffs and the horizons
    offline = pd.read_parquet(home / "feature_store" / "offline" / "customer_features.parquet")
    assert pd.to_datetime(offline["event_timestamp"], utc=True).max() <= as_of.tz_convert("UTC")
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    parents = client.search_runs([_experiment_id(client, settings)], "tags.`parcours.response.status` = 'skipped'")
    assert parents, "the response model is skipped (no contacts), not failed"
    run = client.get_run(str(_version("purchase", "champion", settings).run_id))
    assert pd.Timestamp(run.data.params["test_end"]) + pd.Timedelta(days=14) <= as_of
    assert run.data.params["horizon_days"] == "14"
