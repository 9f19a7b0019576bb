"""`parcours score` on a real workspace: Feast offline snapshot, MLflow champions, LightGBM, the real policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.policy_state import contact_state
from features.request import add_request_features
from features.store import offline_path
from journey.catalog import default_catalog_path
from journey.vocabulary import CONSENT_COLUMNS
from parcours.cli import app
from serving.batch import contact_states, latest_snapshot, plan_for, score_base
from tests.integration.conftest import Workspace

COLUMNS: tuple[str, ...] = (
    "customer_id",
    "phase",
    "churn_risk",
    "purchase_propensity",
    "channel",
    "content",
    "score",
    "uplift",
    "propensity",
    "objective",
    "p_discovery",
    "p_advocacy",
)


def score(workspace: Workspace, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["score", *args, "--home", str(workspace.home)], env=env)
    return result.exit_code, result.output + (repr(result.exception) if result.exit_code else "")


def latest(workspace: Workspace) -> pd.DataFrame:
    frame = pd.read_parquet(offline_path(workspace.settings))
    return frame[frame.event_timestamp == frame.event_timestamp.max()].reset_index(drop=True)


def assert_consent_respected(decisions: pd.DataFrame, features: pd.DataFrame) -> None:
    joined = decisions.merge(features, on="customer_id", how="left", validate="one_to_one")
    for channel, consent in CONSENT_COLUMNS.items():
        chosen = joined[joined.channel == channel]
        assert (chosen[consent].fillna(0) >= 0.5).all(), f"{channel} chosen without {consent}"


def test_score_workspace_writes_one_row_per_customer(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "decisions.parquet"
    code, output = score(workspace, "--out", str(out), env={"PARCOURS_EXPLORATION_RATE": "0"})
    assert code == 0, output
    decisions = pd.read_parquet(out)
    snapshot = latest(workspace)
    assert len(decisions) == len(snapshot) and decisions.customer_id.is_unique
    assert set(decisions.customer_id) == set(snapshot.customer_id)
    assert set(COLUMNS) <= set(decisions.columns)
    assert decisions.phase.isin(["discovery", "consideration", "purchase", "service", "advocacy"]).all()
    assert decisions.churn_risk.between(0, 1).all() and decisions.purchase_propensity.between(0, 1).all()
    assert (decisions.propensity == 1.0).all()  # no exploration asked
    assert (decisions[decisions.channel == "none"].score == 0).all()
    assert (decisions[decisions.channel != "none"].score > 0).all()
    assert decisions.channel.nunique() > 1
    assert_consent_respected(decisions, snapshot)


def test_batch_decisions_are_the_api_decisions(workspace: Workspace) -> None:
    features, snapshot_ts = latest_snapshot(workspace.settings)
    plan = plan_for(workspace.settings)
    plan.engine.exploration_rate = 0.0
    now = snapshot_ts + pd.Timedelta(hours=11)
    batch = score_base(workspace.settings, features, now, plan=plan)
    frame = add_request_features(features, now)
    # The policy state the batch derives from the features is the one the API builds per customer.
    states = contact_states(frame, now)
    for k in range(0, len(features), 97):
        values = {
            str(c): float(v) for c, v in features.drop(columns=["customer_id", "event_timestamp"]).iloc[k].items()
        }
        state = contact_state(values, [], now)
        assert {c: bool(states.consents[c][k]) for c in state.consents} == state.consents
        assert {c: int(states.sent_week[c][k]) for c in state.sent_week} == state.sent_week
        decision = plan.engine.decide(str(features.customer_id[k]), frame.iloc[[k]].reset_index(drop=True), state, now)
        row = batch.iloc[k]
        assert (decision.action.channel, decision.action.content) == (row.channel, row.content)
        assert decision.action.score == pytest.approx(row.score, rel=1e-12, abs=1e-12)
        assert decision.propensity == row.propensity and decision.phase == row.phase


def test_score_own_data_as_of_a_date(workspace: Workspace, tmp_path: Path) -> None:
    customers = workspace.customers
    events = pd.read_parquet(workspace.home / "data" / "demo" / "events.parquet")
    as_of = (pd.to_datetime(events.ts, utc=True).max() - pd.Timedelta(days=30)).floor("D")
    out = tmp_path / "as_of.parquet"
    code, output = score(workspace, "--data", "data/demo", "--as-of", f"{as_of:%Y-%m-%d}", "--out", str(out))
    assert code == 0, output
    decisions = pd.read_parquet(out)
    assert set(COLUMNS) <= set(decisions.columns)
    assert decisions.customer_id.is_unique and 0 < len(decisions) <= len(customers)
    before = pd.to_datetime(events.ts, utc=True) < as_of
    assert set(decisions.customer_id) <= set(events.customer_id[before]) | set(customers.customer_id)
    assert (pd.to_datetime(decisions.decided_at, utc=True) == as_of + pd.Timedelta(hours=10)).all()
    consents = customers.set_index("customer_id")
    for channel, consent in CONSENT_COLUMNS.items():
        # Consent today is at most the consent then (an unsubscribe since can only remove it): whoever got
        # a channel had its consent as of the date; customers who never gave it can never get the channel.
        never = consents.index[~consents[consent].astype(bool)]
        unsubscribed = events.customer_id[(events.event_type == "unsubscribe") & (events.channel == channel)]
        chosen = decisions[(decisions.channel == channel) & decisions.customer_id.isin(never)]
        assert chosen.customer_id.isin(unsubscribed).all(), f"{channel} without consent"


def test_channel_capacity_is_respected(workspace: Workspace, tmp_path: Path) -> None:
    free = tmp_path / "free.parquet"
    env = {"PARCOURS_EXPLORATION_RATE": "0.2"}
    assert score(workspace, "--out", str(free), env=env)[0] == 0
    wanted = pd.read_parquet(free).channel.value_counts()
    channel = "email" if wanted.get("email", 0) > 20 else str(wanted.drop("none", errors="ignore").index[0])
    capacity = int(wanted[channel]) // 4
    catalog = yaml.safe_load(default_catalog_path().read_text())
    catalog["channels"][channel]["daily_capacity"] = capacity
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    capped = tmp_path / "capped.parquet"
    code, output = score(workspace, "--out", str(capped), env={**env, "PARCOURS_CATALOG_PATH": str(path)})
    assert code == 0, output
    decisions = pd.read_parquet(capped)
    assert len(decisions) == len(pd.read_parquet(free))
    assert 0 < (decisions.channel == channel).sum() <= capacity
    assert_consent_respected(decisions, latest(workspace))
    assert np.isfinite(decisions.propensity).all() and decisions.propensity.between(0, 1).all()
    # The customers who kept the channel are the ones it was worth most to (greedy by value, before exploring).
    kept = decisions[(decisions.channel == channel) & ~decisions.explored]
    moved = decisions[(pd.read_parquet(free).channel == channel) & (decisions.channel != channel) & ~decisions.explored]
    assert len(moved) > 0 and (moved.score <= kept.score.max()).all()


def test_score_refuses_half_an_own_data_request(workspace: Workspace, tmp_path: Path) -> None:
    code, output = score(workspace, "--data", "data/demo", "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "--as-of" in output
    code, output = score(workspace, "--data", "nowhere", "--as-of", "2026-01-01", "--out", str(tmp_path / "y.parquet"))
    assert code == 2 and "nowhere" in output
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "y.parquet").exists()


def test_compiled_models_decide_like_lightgbm_and_are_cached_for_serving(workspace: Workspace, tmp_path: Path) -> None:
    """`parcours score` with compiled forests (in its own process: a native crash fails this test, not the suite)
    decides exactly what the LightGBM Boosters decide, and leaves one object per model version for serving."""
    pytest.importorskip("lleaves")
    import os
    import subprocess
    import sys

    from serving.models import compiled_dir

    env = {**os.environ, "PARCOURS_EXPLORATION_RATE": "0", "PARCOURS_HOME": str(workspace.home)}
    outputs = {}
    for mode in ("batch", "off"):
        outputs[mode] = tmp_path / f"{mode}.parquet"
        command = [sys.executable, "-c", "from parcours.cli import app; app()", "score", "--out", str(outputs[mode])]
        done = subprocess.run(
            command, env={**env, "PARCOURS_COMPILED_MODELS": mode}, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{mode}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    fast, slow = pd.read_parquet(outputs["batch"]), pd.read_parquet(outputs["off"])
    same = ["customer_id", "phase", "channel", "content", "objective", "n_candidates"]
    pd.testing.assert_frame_equal(fast[same], slow[same])
    for column in ("churn_risk", "purchase_propensity", "p_discovery", "score", "uplift", "p_response", "p_baseline"):
        np.testing.assert_allclose(fast[column], slow[column], rtol=1e-9, atol=1e-12, err_msg=column)
    for task in ("phase", "churn", "purchase", "response"):
        name = workspace.settings.model_name(task)
        versions = list((workspace.home / "cache" / "compiled" / name).iterdir())
        assert len(versions) == 1
        assert len(list(compiled_dir(workspace.settings, name, versions[0].name).glob("*.o"))) == 1
