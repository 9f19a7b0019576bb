"""Outbound batch throughput: `serving.batch.score_base` over N synthetic customers, end to end but feature build.

    .venv/bin/python bench/batch.py --customers 1000000 --out batch.json [--home WORKSPACE] [--batch-size 20000]
        [--predictors compiled,booster] [--batch-sizes 10000,20000,50000]

The customers are rows of a real simulated workspace's latest snapshot (its champion models decide), sampled with
replacement and perturbed (float features × lognormal noise, counts kept) under fresh ids, so the decision mix
looks like a real base. Without --home a small workspace is built first (`parcours demo --no-serve`, ~4 min).
Timed: request features, contact states, the three customer models, eligibility, policies, one response predict
per batch, capacity allocation and the choice; not timed: generating the rows, loading (and, the first time per
model version, compiling) the models, writing nothing. Models predict compiled (lleaves, `serving.compiled`) unless
`--predictors` says otherwise; several predictors/batch sizes run one after the other on the same base, for ratios
measured side by side. Reports `batch_customers`, `batch_s`, `rows_per_s`, `cpu_s`, `peak_rss_mb` (the process's
high-water mark, the generated frame included), per run `load_s` and per-model `predict_s`, and the decision mix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder is first on sys.path and its serving.py (the serving benchmark) would shadow the
# `serving` package: put the project first instead.
sys.path[:] = [str(PROJECT_ROOT), *(p for p in sys.path if Path(p or ".").resolve() != PROJECT_ROOT / "bench")]


def synthetic_base(snapshot: pd.DataFrame, customers: int, seed: int = 0) -> pd.DataFrame:
    """`customers` rows drawn from `snapshot` with replacement; float features jittered, ids fresh."""
    rng = np.random.default_rng(seed)
    frame = snapshot.iloc[rng.integers(0, len(snapshot), customers)].reset_index(drop=True)
    for name in frame.columns:
        column = frame[name]
        if column.dtype == np.float64 and not name.startswith(("consent", "last_", "first_")):
            frame[name] = column.to_numpy() * rng.lognormal(0.0, 0.1, customers)
    frame["customer_id"] = np.char.add("b", np.arange(customers).astype(str)).astype(object)
    return frame


def demo_workspace(home: Path) -> None:
    command = [sys.executable, "-m", "parcours.cli", "demo", "--no-serve", "--customers", "2000", "--days", "120"]
    subprocess.run([*command, "--seed", "7", "--home", str(home)], check=True, cwd=PROJECT_ROOT)


def run(
    home: Path,
    customers: int,
    batch_size: int,
    seed: int,
    predictors: tuple[str, ...] = ("compiled",),
    batch_sizes: tuple[int, ...] = (),
) -> dict[str, Any]:
    """One timed decision run per (predictor, batch size) on the same generated base; the first is the headline."""
    from journey.settings import Settings
    from serving.batch import latest_snapshot

    settings = Settings(home=home)
    snapshot, snapshot_ts = latest_snapshot(settings)
    started = time.perf_counter()
    base = synthetic_base(snapshot, customers, seed)
    generate_s = time.perf_counter() - started
    now = snapshot_ts.floor("D") + pd.Timedelta(hours=10)
    runs = [
        timed_run(settings, base, now, predictor, size)
        for predictor in predictors
        for size in (batch_sizes or (batch_size,))
    ]
    head = runs[0]
    result = {
        "batch_customers": customers,
        **{key: head[key] for key in ("batch_s", "rows_per_s", "cpu_s", "predictor", "batch_size")},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "generate_s": round(generate_s, 2),
        "source_customers": len(snapshot),
        "runs": [{k: v for k, v in r.items() if k not in ("channel_mix", "capacities", "models")} for r in runs],
        "channel_mix": head["channel_mix"],
        "capacities": head["capacities"],
        "models": head["models"],
        "machine": {"python": platform.python_version(), "cpus": _cpus(), "load_avg_1m": os.getloadavg()[0]},
    }
    if len(runs) > 1:
        result["speedup_vs_last"] = {
            "wall": round(runs[-1]["batch_s"] / head["batch_s"], 2),
            "cpu": round(runs[-1]["cpu_s"] / head["cpu_s"], 2),
        }
    return result


def timed_run(settings: Any, base: pd.DataFrame, now: pd.Timestamp, predictor: str, batch_size: int) -> dict[str, Any]:
    """Load the models (`compiled`: lleaves, compiled now or from the cache; `booster`: LightGBM), then decide."""
    from serving.batch import plan_for, score_base
    from serving.models import load_models

    settings = settings.model_copy(update={"compiled_models": "batch" if predictor == "compiled" else "off"})
    started = time.perf_counter()
    models = load_models(settings, compile_models=predictor == "compiled")
    load_s = time.perf_counter() - started
    timers = {m.task: TimedPredictor(m.predictor) for m in models.loaded()}
    models = dataclasses.replace(
        models, **{m.task: dataclasses.replace(m, predictor=timers[m.task]) for m in models.loaded()}
    )
    plan = plan_for(settings, models=models, batch_size=batch_size)
    started, cpu_started = time.perf_counter(), time.process_time()
    decisions = score_base(settings, base, now, plan=plan)
    batch_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "predictor": predictor,
        "batch_size": batch_size,
        "batch_s": round(batch_s, 2),
        "rows_per_s": round(len(base) / batch_s),
        "cpu_s": round(cpu_s, 2),  # CPU time over all threads: on a busy machine, wall time overstates the cost
        "load_s": round(load_s, 2),  # registry + (first time per model version) compilation
        "predictors": {task: type(t.inner).__name__ for task, t in timers.items()},
        "predict_s": {task: round(t.seconds, 2) for task, t in timers.items()},
        "predict_rows": {task: t.rows for task, t in timers.items()},
        "channel_mix": decisions["channel"].value_counts(normalize=True).round(4).to_dict(),
        "capacities": plan.capacities,
        "models": plan.engine.models.versions(),
    }


class TimedPredictor:
    """Wall time and rows of every predict, to see where a run goes (model by model)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds, self.rows = inner, 0.0, 0

    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        started = time.perf_counter()
        out = np.asarray(self.inner.predict(data, **kwargs))
        self.seconds += time.perf_counter() - started
        self.rows += len(data)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--home", type=Path, default=None, help="Workspace with features and champion models.")
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--predictors",
        default="compiled",
        help="Comma-separated runs on the same base: compiled (lleaves, cached), booster (LightGBM). First = headline.",
    )
    parser.add_argument(
        "--batch-sizes", default="", help="Comma-separated batch sizes to compare (instead of --batch-size)."
    )
    args = parser.parse_args(argv)
    predictors = tuple(p.strip() for p in args.predictors.split(",") if p.strip())
    if not predictors or set(predictors) - {"compiled", "booster"}:
        parser.error("--predictors: a comma-separated list of 'compiled' and 'booster'")
    sizes = tuple(int(v) for v in args.batch_sizes.split(",") if v.strip())
    with tempfile.TemporaryDirectory(prefix="parcours-bench-") as tmp:
        home = args.home
        if home is None:
            home = Path(tmp)
            demo_workspace(home)
        result = run(home.resolve(), args.customers, args.batch_size, args.seed, predictors, sizes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
