"""The Hillstrom benchmark end to end on a fixed subset: contract → features → response model → decisions → IPS."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.real import hillstrom  # noqa: E402

DATA = hillstrom.dataset_file(None, hillstrom.FOLDER, hillstrom.FILENAME)
pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"Hillstrom data not found at {DATA}")


def test_one_seed_one_cost(tmp_path: Path) -> None:
    out, decisions = tmp_path / "h.json", tmp_path / "d.csv"
    code = hillstrom.main(["--seed", "0", "--costs", "0.06", "--sample", "4000", "--out", str(out),
                           "--decisions-out", str(decisions)])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    policies = result["per_seed"][0]["costs"]["0.06"]
    assert set(policies) == {
        "parcours", "parcours_dr_learner", "parcours_s_learner", "s_learner_lgbm", "no_email", "all_mens", "all_womens"
    }  # fmt: skip
    mens = policies["all_mens"]
    assert mens["emailed_share"] == 1.0 and mens["net"] == pytest.approx(mens["visits"] - 0.06)
    assert policies["no_email"]["emailed_share"] == 0.0
    assert 0.05 < policies["no_email"]["visits"] < 0.2  # ~0.106 on the full data
    summary = result["summary"]["0.06"]
    assert "parcours_beats_all_baselines" in summary and "net_std" in summary["policies"]["parcours"]
    paired = summary["parcours_minus_baseline"]["all_mens"]
    assert paired["diff_mean"] == pytest.approx(policies["parcours"]["net"] - mens["net"])
    assert paired["wins"] + paired["ties"] + paired["losses"] == 1
    # the policy learner's tree is recorded, and deviates only where its training half shows a gain
    choice = result["per_seed"][0]["policy_choice"]["0.06"]
    assert summary["policy_deviating_share"] == [choice["deviating_share"]]
    assert summary["policy_splits"] == [choice["splits"]] and all(isinstance(s, str) for s in choice["splits"])
    assert choice["value"] >= choice["constant_value"] and choice["reference"] in {-1, 0, 1}
    assert (choice["deviating_share"] > 0) == (choice["gain"] > 0)

    frame = pd.read_csv(decisions)
    assert list(frame.columns) == ["row", "cost", "arm"]
    evaluated, trained = frame.loc[frame["cost"].notna()], frame.loc[frame["cost"].isna()]
    assert len(evaluated) == len(trained) == 2000 and not set(evaluated["row"]) & set(trained["row"])
    assert trained["arm"].isna().all()
    assert set(evaluated["arm"]) <= {"Mens E-Mail", "Womens E-Mail", "No E-Mail"}
    assert frame["row"].between(0, 63_999).all() and frame["row"].is_unique and len(frame) == 4000

    # the decisions file reproduces the reported IPS value
    raw = pd.read_csv(DATA)
    rows = raw.loc[evaluated["row"].to_numpy()]
    match = (rows["segment"].to_numpy() == evaluated["arm"].to_numpy()).astype(float)
    ips = float(np.mean(match * rows["visit"].to_numpy() * 3.0))
    assert ips == pytest.approx(policies["parcours"]["visits"])


def test_missing_data_is_a_clean_skip(tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    assert hillstrom.main(["--out", str(out), "--data-dir", str(tmp_path)]) == 0
    assert "skipped" in json.loads(out.read_text())
