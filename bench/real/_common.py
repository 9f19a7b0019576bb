"""Shared machinery of the real-data benchmarks: data location, the repeated stratified CV loop, JSON, MLflow.

Every number a benchmark reports comes from `cross_validate`: each model is fitted on the training part of an
outer fold only (feature encodings, imputation, early stopping and bagging included) and scored on that fold's
held-out part, so the outer folds are never used to choose anything.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "brier", "log_loss", "lift_top_decile")
PRIMARY = "parcours"
BASELINE = "baseline_logistic"


@dataclass(frozen=True)
class CVConfig:
    """Repeated stratified K-fold: repeat r shuffles with `seed + r`, so runs are reproducible and comparable."""

    folds: int = 5
    repeats: int = 3
    seed: int = 0
    inner_folds: int = 5  # inner split of each outer training part, for early stopping / bagging


class FitPredict(Protocol):
    """Fit every model on one outer training part and return each one's P(y=1) on the held-out part."""

    def __call__(self, X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame, seed: int) -> dict[str, Any]:
        """Model name → (n_test,) probabilities; must contain `PRIMARY` and `BASELINE`."""
        ...


@dataclass
class CVRun:
    """Per-fold metrics of every model, and out-of-fold predictions of the first repeat (for the ROC plot)."""

    y: np.ndarray
    fold_metrics: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    oof: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- data
def dataset_file(data_dir: Path | None, folder: str, filename: str) -> Path:
    """Path of a shared data file (`../shared/data/<folder>/<filename>` from the project root by default)."""
    return (data_dir or DEFAULT_DATA_DIR) / folder / filename


def missing_reason(path: Path) -> str | None:
    """Why a benchmark cannot run (None when its file is there)."""
    if path.exists():
        return None
    return f"real data not found: {path} (the benchmarks read ../shared/data relative to the project root)"


def encode_categories(
    train: pd.DataFrame, test: pd.DataFrame, columns: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Integer codes learned on the training part only; a level unseen in training becomes -1 (missing).

    LightGBMTask (and serving) need integer codes rather than pandas categories, and fitting the vocabulary
    inside the fold keeps the test part out of every fitted step.
    """
    train, test = train.copy(), test.copy()
    for column in columns:
        levels = sorted(train[column].astype(str).unique())
        index = {level: i for i, level in enumerate(levels)}
        train[column] = train[column].astype(str).map(index).astype(np.int64)
        test[column] = test[column].astype(str).map(index).fillna(-1).astype(np.int64)
    return train, test


# ---------------------------------------------------------------------------------------------- models
def bagged_lightgbm(
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_test: pd.DataFrame,
    *,
    params: Mapping[str, Any],
    categorical: Sequence[str],
    seed: int,
    inner_folds: int,
    num_boost_round: int = 3000,
    early_stopping_rounds: int = 200,
) -> tuple[np.ndarray, list[int]]:
    """Mean prediction of `inner_folds` LightGBM models, each early-stopped on its own inner validation fold.

    Early stopping needs held-out rows, and on a few thousand rows one 20% split wastes data and makes the
    stopping round noisy; bagging over the inner folds uses every training row and averages that noise away.
    Returns the test probabilities and the best iteration of each inner model.
    """
    from sklearn.model_selection import StratifiedKFold

    from training.lgbm import LightGBMTask

    splitter = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    predictions, iterations = [], []
    for fit_idx, valid_idx in splitter.split(X_train, y_train):
        model = LightGBMTask(
            "binary",
            params=dict(params),
            num_boost_round=num_boost_round,
            early_stopping_rounds=early_stopping_rounds,
            categorical=categorical,
            seed=seed,
        )
        model.fit(X_train.iloc[fit_idx], y_train[fit_idx], X_train.iloc[valid_idx], y_train[valid_idx])
        predictions.append(model.predict_proba(X_test))
        iterations.append(model.best_iteration_)
    return np.mean(predictions, axis=0), iterations


def single_split_lightgbm(
    X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame, *, categorical: Sequence[str], seed: int
) -> np.ndarray:
    """LightGBMTask with the project's default parameters and one stratified 80/20 early-stopping split.

    This is what the training pipeline does out of the box, so it is reported as a second baseline.
    """
    from sklearn.model_selection import train_test_split

    from training.lgbm import LightGBMTask

    fit_idx, valid_idx = train_test_split(np.arange(len(y_train)), test_size=0.2, stratify=y_train, random_state=seed)
    model = LightGBMTask("binary", params={"num_threads": 1}, categorical=categorical, seed=seed)
    model.fit(X_train.iloc[fit_idx], y_train[fit_idx], X_train.iloc[valid_idx], y_train[valid_idx])
    return model.predict_proba(X_test)


# ---------------------------------------------------------------------------------------------- CV loop
def cross_validate(X: pd.DataFrame, y: np.ndarray, fit_predict: FitPredict, config: CVConfig) -> CVRun:
    """Repeated stratified K-fold: fit on each outer training part, score every model on the held-out part."""
    from sklearn.model_selection import StratifiedKFold

    from training.evaluation import binary_metrics

    run = CVRun(y=np.asarray(y))
    started = time.perf_counter()
    for repeat in range(config.repeats):
        splitter = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed + repeat)
        for fold, (train_idx, test_idx) in enumerate(splitter.split(X, y)):
            scores = fit_predict(X.iloc[train_idx], y[train_idx], X.iloc[test_idx], config.seed + repeat)
            for name, proba in scores.items():
                metrics = binary_metrics(y[test_idx], proba)
                run.fold_metrics.setdefault(name, []).append({m: metrics[m] for m in METRICS})
                if repeat == 0:
                    run.oof.setdefault(name, np.full(len(y), np.nan))[test_idx] = np.asarray(proba, float)
            auc = run.fold_metrics[PRIMARY][-1]["roc_auc"]
            base = run.fold_metrics[BASELINE][-1]["roc_auc"]
            print(f"repeat {repeat} fold {fold}: {PRIMARY} AUC {auc:.4f}  {BASELINE} AUC {base:.4f}", file=sys.stderr)
    run.seconds = time.perf_counter() - started
    return run


def summarise(run: CVRun) -> dict[str, Any]:
    """Flat headline keys (`roc_auc_mean`, `baseline_logistic_auc_mean`, ...) plus per-model, per-fold detail.

    The primary model's metrics are unprefixed; every other model's are prefixed by its name, with `roc_auc`
    shortened to `auc` (e.g. `baseline_logistic_auc_mean`). The paired per-fold difference to the logistic
    baseline is reported too: with folds shared, it is far less noisy than comparing two means.
    """
    out: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for name, folds in run.fold_metrics.items():
        detail = {m: _stats([f[m] for f in folds]) for m in METRICS}
        models[name] = detail
        for metric, stats in detail.items():
            key = metric if name == PRIMARY else f"{name}_{'auc' if metric == 'roc_auc' else metric}"
            out[f"{key}_mean"], out[f"{key}_std"] = stats["mean"], stats["std"]
    out["roc_auc_folds"] = models[PRIMARY]["roc_auc"]["folds"]
    out["baseline_logistic_auc_folds"] = models[BASELINE]["roc_auc"]["folds"]
    diff = np.subtract(out["roc_auc_folds"], out["baseline_logistic_auc_folds"])
    out["auc_gain_over_logistic_mean"] = float(diff.mean())
    out["auc_gain_over_logistic_std"] = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    out["folds_won_over_logistic"] = int((diff > 0).sum())
    out["models"] = models
    out["n_rows"] = len(run.y)
    out["positive_rate"] = float(np.mean(run.y))
    out["runtime_seconds"] = round(run.seconds, 1)
    return out


def run_cv_benchmark(
    config: CVConfig,
    data_dir: Path | None,
    source: tuple[str, str],
    load: Callable[[Path], tuple[pd.DataFrame, np.ndarray]],
    fit_predict: Callable[..., dict[str, Any]],
    describe: Mapping[str, str],
    params: Mapping[str, Any],
) -> tuple[dict[str, Any], CVRun | None]:
    """The skeleton every real-data benchmark shares: skip cleanly without the data, repeated stratified CV of
    `fit_predict(X_train, y_train, X_test, seed, inner_folds=...)`, and the JSON payload (`describe` names the
    dataset and target, `params` the models)."""
    path = dataset_file(data_dir, *source)
    reason = missing_reason(path)
    if reason is not None:
        return {"skipped": reason}, None
    frame, y = load(path)

    def one_fold(X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame, seed: int) -> dict[str, Any]:
        return fit_predict(X_train, y_train, X_test, seed, inner_folds=config.inner_folds)

    run = cross_validate(frame, y, one_fold, config)
    result = {**describe, **summarise(run)}
    result["protocol"] = {
        "folds": config.folds,
        "repeats": config.repeats,
        "seed": config.seed,
        "inner_folds": config.inner_folds,
    }
    result["params"] = dict(params)
    result["environment"] = environment()
    return result, run


def _stats(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "folds": [round(float(v), 6) for v in arr]}


def environment() -> dict[str, str]:
    """Library versions behind the figures (LightGBM and scikit-learn change results across releases)."""
    import lightgbm
    import sklearn

    return {
        "python": platform.python_version(),
        "lightgbm": lightgbm.__version__,
        "scikit_learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }


# ---------------------------------------------------------------------------------------------- output
def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Strict JSON (NaN → null), keys in insertion order, parent folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(dict(payload)), indent=2, allow_nan=False) + "\n")


def log_to_mlflow(benchmark: str, params: Mapping[str, Any], result: Mapping[str, Any], run: CVRun) -> str:
    """One MLflow run: params, headline metrics, per-fold AUCs as steps, the ROC plot and the full JSON.

    Runs go to the `<experiment>-benchmarks` experiment of the workspace store (PARCOURS_HOME), so benchmark
    runs never mix with the training runs that model comparison searches.
    """
    import mlflow

    from journey.settings import Settings
    from training.evaluation import plot_roc
    from training.tracking import configure_mlflow

    base = Settings()
    configure_mlflow(base.model_copy(update={"experiment_name": f"{base.experiment_name}-benchmarks"}))
    with mlflow.start_run(run_name=f"bench-{benchmark}") as active:
        mlflow.set_tags({"parcours.benchmark": benchmark, "parcours.kind": "real-data-benchmark"})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(
            {k: float(v) for k, v in result.items() if isinstance(v, int | float) and math.isfinite(float(v))}
        )
        for step, (auc, base_auc) in enumerate(
            zip(result["roc_auc_folds"], result["baseline_logistic_auc_folds"], strict=True)
        ):
            mlflow.log_metrics({"fold_roc_auc": auc, "fold_baseline_logistic_auc": base_auc}, step=step)
        title = f"{benchmark}: out-of-fold ROC (repeat 0)"
        mlflow.log_figure(plot_roc(run.y, run.oof, title=title), f"{benchmark}_roc.png")
        mlflow.log_dict(_json_safe(dict(result)), f"{benchmark}_result.json")
        return str(active.info.run_id)


# ---------------------------------------------------------------------------------------------- CLI
BenchmarkFn = Callable[[CVConfig, Path | None], tuple[dict[str, Any], CVRun | None]]


def parse_args(description: str, argv: Sequence[str] | None, default_repeats: int = 3) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write the results to")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=default_repeats)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inner-folds", type=int, default=5, help="inner folds for early stopping and bagging")
    parser.add_argument("--data-dir", type=Path, default=None, help=f"default: {DEFAULT_DATA_DIR}")
    parser.add_argument("--mlflow", action="store_true", help="log the run to the PARCOURS_HOME MLflow store")
    return parser.parse_args(argv)


def main(name: str, description: str, benchmark: BenchmarkFn, argv: Sequence[str] | None = None) -> int:
    """Run one benchmark from the command line; a missing data set is a clean skip (exit 0), not a failure."""
    args = parse_args(description, argv)
    config = CVConfig(folds=args.folds, repeats=args.repeats, seed=args.seed, inner_folds=args.inner_folds)
    result, run = benchmark(config, args.data_dir)
    if "skipped" in result:
        print(f"{name}: skipped — {result['skipped']}", file=sys.stderr)
        write_json(args.out, result)
        return 0
    if args.mlflow and run is not None:
        result["mlflow_run_id"] = log_to_mlflow(name, {**result["params"], **asdict(config)}, result, run)
    write_json(args.out, result)
    print(
        f"{name}: {PRIMARY} ROC AUC {result['roc_auc_mean']:.4f} ± {result['roc_auc_std']:.4f}; "
        f"logistic baseline {result['baseline_logistic_auc_mean']:.4f} ± {result['baseline_logistic_auc_std']:.4f} "
        f"({config.folds} folds × {config.repeats} repeats, {result['runtime_seconds']} s) → {args.out}"
    )
    return 0
