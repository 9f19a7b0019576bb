"""Outbound batch throughput: `serving.batch.score_base` over N synthetic customers, end to end but feature build.

    .venv/bin/python bench/batch.py --customers 1000000 --out batch.json [--home WORKSPACE] [--batch-size 20000]

The customers are rows of a real simulated workspace's latest snapshot (its champion models decide), sampled with
replacement and perturbed (float features × lognormal noise, counts kept) under fresh ids, so the decision mix
looks like a real base. Without --home a small workspace is built first (`parcours demo --no-serve`, ~4 min).
Timed: request features, contact states, the three customer models, eligibility, policies, one response predict
per batch, capacity allocation and the choice; not timed: generating the rows, loading models, writing nothing.
Reports `batch_customers`, `batch_s`, `rows_per_s`, `cpu_s`, `peak_rss_mb` (the process's high-water mark, the
generated frame included) and the decision mix.
"""

from __future__ import annotations

import argparse
import json
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


def run(home: Path, customers: int, batch_size: int, seed: int) -> dict[str, Any]:
    from journey.settings import Settings
    from serving.batch import latest_snapshot, plan_for, score_base

    settings = Settings(home=home)
    snapshot, snapshot_ts = latest_snapshot(settings)
    started = time.perf_counter()
    base = synthetic_base(snapshot, customers, seed)
    generate_s = time.perf_counter() - started
    plan = plan_for(settings, batch_size=batch_size)
    now = snapshot_ts.floor("D") + pd.Timedelta(hours=10)
    started, cpu_started = time.perf_counter(), time.process_time()
    decisions = score_base(settings, base, now, plan=plan)
    batch_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    mix = decisions["channel"].value_counts(normalize=True).round(4).to_dict()
    return {
        "batch_customers": customers,
        "batch_s": round(batch_s, 2),
        "rows_per_s": round(customers / batch_s),
        "cpu_s": round(cpu_s, 2),  # CPU time over all threads: on a busy machine, wall time overstates the cost
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "batch_size": batch_size,
        "generate_s": round(generate_s, 2),
        "source_customers": len(snapshot),
        "channel_mix": mix,
        "capacities": plan.capacities,
        "models": plan.engine.models.versions(),
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--home", type=Path, default=None, help="Workspace with features and champion models.")
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parcours-bench-") as tmp:
        home = args.home
        if home is None:
            home = Path(tmp)
            demo_workspace(home)
        result = run(home.resolve(), args.customers, args.batch_size, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
