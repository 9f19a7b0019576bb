"""Compiled forests (lleaves) predict what LightGBM predicts, are cached per model, and fall back to the Booster."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from journey.scoring import LoadedModel
from journey.settings import Settings
from serving import compiled as compiled_module
from serving.compiled import CompiledPredictor, check_agreement, compiled_predictor
from serving.models import ServingBooster, compiled_dir, predictor_for

pytest.importorskip("lleaves")

WIDTH = 6


def frame(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, WIDTH))
    x[:, -1] = rng.integers(0, 4, rows)  # a categorical code, like the response model's action columns
    x[rng.random(x.shape) < 0.15] = np.nan
    return x


def train(objective: str, classes: int = 1, seed: int = 0) -> lgb.Booster:
    x = frame(600, seed)
    rng = np.random.default_rng(seed + 1)
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) + (x[:, -1] == 2)
    y = np.digitize(signal + rng.normal(0, 0.3, len(x)), np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    params = {"objective": objective, "num_leaves": 7, "verbose": -1, "min_data_in_leaf": 5, "seed": seed}
    if classes > 2:
        params["num_class"] = classes
    data = lgb.Dataset(x, y.astype(float), categorical_feature=[WIDTH - 1], free_raw_data=False)
    return lgb.train(params, data, num_boost_round=15)


@pytest.fixture(scope="module")
def binary() -> lgb.Booster:
    return train("binary", classes=2)


@pytest.fixture(scope="module")
def multiclass() -> lgb.Booster:
    return train("multiclass", classes=3, seed=3)


def compiled(booster: lgb.Booster, cache: Path) -> CompiledPredictor:
    predictor, report = compiled_predictor(booster, cache)
    assert predictor is not None, report.reason
    assert isinstance(predictor, CompiledPredictor)
    return predictor


@pytest.mark.parametrize("rows", [1, 7, 3000])  # one thread below SMALL_INPUT_ROWS, every core above
def test_binary_predictions_match_lightgbm_with_missing_values(binary: lgb.Booster, tmp_path: Path, rows: int) -> None:
    x = frame(rows, seed=11)
    x[0] = np.nan  # an all-missing row
    got = compiled(binary, tmp_path).predict(x)
    assert got.shape == (rows,)
    np.testing.assert_allclose(got, binary.predict(x), rtol=1e-9, atol=1e-12)


def test_multiclass_layout_is_rows_by_classes(multiclass: lgb.Booster, tmp_path: Path) -> None:
    x = frame(2500, seed=12)
    got = compiled(multiclass, tmp_path).predict(x, num_threads=2)
    expected = np.asarray(multiclass.predict(x))
    assert got.shape == expected.shape == (2500, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_empty_input_keeps_the_output_layout(binary: lgb.Booster, multiclass: lgb.Booster, tmp_path: Path) -> None:
    empty = np.empty((0, WIDTH))
    assert compiled(binary, tmp_path / "b").predict(empty, num_threads=0).shape == (0,)
    assert compiled(multiclass, tmp_path / "m").predict(empty).shape == (0, 3)


def test_explanations_and_other_attributes_go_to_the_booster(binary: lgb.Booster, tmp_path: Path) -> None:
    predictor = compiled(binary, tmp_path)
    x = frame(5, seed=13)
    contributions = predictor.predict(x, pred_contrib=True)
    assert contributions.shape == (5, WIDTH + 1)
    np.testing.assert_allclose(contributions, binary.predict(x, pred_contrib=True))
    assert predictor.num_feature() == WIDTH
    model = LoadedModel(task="churn", name="m", version="1", predictor=predictor, feature_names=tuple("abcdef"))
    assert model.contributions(x).shape == (5, WIDTH + 1)


def test_compiled_once_then_loaded_from_the_cache(binary: lgb.Booster, tmp_path: Path) -> None:
    first, built = compiled_predictor(binary, tmp_path)
    again, loaded = compiled_predictor(binary, tmp_path)
    assert (built.outcome, loaded.outcome) == ("compiled", "cached")
    assert built.path == loaded.path and built.path is not None and built.path.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch file left behind
    x = frame(50, seed=14)
    assert first is not None and again is not None
    np.testing.assert_array_equal(first.predict(x), again.predict(x))


def test_another_model_gets_another_object(binary: lgb.Booster, multiclass: lgb.Booster, tmp_path: Path) -> None:
    _, one = compiled_predictor(binary, tmp_path)
    _, other = compiled_predictor(multiclass, tmp_path)
    assert other.outcome == "compiled" and other.path != one.path


def test_cache_only_does_not_compile(binary: lgb.Booster, tmp_path: Path) -> None:
    predictor, report = compiled_predictor(binary, tmp_path, build=False)
    assert predictor is None and report.outcome == "booster" and "not compiled" in report.reason
    assert not any(tmp_path.glob("*.o"))


def test_without_lleaves_the_booster_predicts(
    binary: lgb.Booster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lleaves", None)  # import lleaves → ImportError
    predictor, report = compiled_predictor(binary, tmp_path)
    assert predictor is None and "not installed" in report.reason


def test_a_compiled_forest_that_disagrees_is_refused(binary: lgb.Booster) -> None:
    class Wrong:
        def predict(self, data: np.ndarray, n_jobs: int = 1) -> np.ndarray:
            return np.full(len(data), 0.5)

    with pytest.raises(ValueError, match="differ from LightGBM"):
        check_agreement(CompiledPredictor(Wrong(), binary), binary)


@pytest.mark.parametrize(
    ("script", "reason"),
    [("raise SystemExit('llvm says no')", "llvm says no"), ("import os; os.abort()", "exit code -6")],
)
def test_compilation_failure_or_crash_falls_back_to_the_booster(
    binary: lgb.Booster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    script: str,
    reason: str,
) -> None:
    monkeypatch.setattr(compiled_module, "_COMPILE_SCRIPT", script)  # the child process fails or dies
    settings = Settings(home=tmp_path, compiled_models="batch")
    with caplog.at_level(logging.WARNING, logger="serving.models"):
        predictor = predictor_for(settings, binary, "parcours-churn", "3", compile_models=True)
    assert isinstance(predictor, ServingBooster)
    assert reason in caplog.text and "parcours-churn/3" in caplog.text
    assert not any(compiled_dir(settings, "parcours-churn", "3").glob("*.o"))
    assert not any(p.name.endswith(".tmp") for p in compiled_dir(settings, "parcours-churn", "3").iterdir())
    x = frame(4)
    np.testing.assert_allclose(predictor.predict(x), binary.predict(x))


def test_settings_choose_the_predictor(binary: lgb.Booster, tmp_path: Path) -> None:
    assert Settings(home=tmp_path).compiled_models == "off"  # opt-in for now (see serving.compiled)
    batch = Settings(home=tmp_path, compiled_models="batch")  # serving only uses what a batch run compiled
    assert isinstance(predictor_for(batch, binary, "parcours-churn", "1", None), ServingBooster)
    assert isinstance(predictor_for(batch, binary, "parcours-churn", "1", True), CompiledPredictor)
    assert any(compiled_dir(batch, "parcours-churn", "1").glob("*.o"))
    assert isinstance(predictor_for(batch, binary, "parcours-churn", "1", None), CompiledPredictor)  # now cached
    off = Settings(home=tmp_path, compiled_models="off")
    assert isinstance(predictor_for(off, binary, "parcours-churn", "1", True), ServingBooster)
    always = Settings(home=tmp_path / "other", compiled_models="always")
    assert isinstance(predictor_for(always, binary, "parcours-churn", "1", None), CompiledPredictor)
