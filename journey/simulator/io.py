"""Write (and read back) a simulation in the workspace layout: contract tables plus a ground_truth folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from journey.simulator.environment import SimulatedData

TABLES: tuple[str, ...] = ("customers", "events", "contacts")
GROUND_TRUTH_DIR = "ground_truth"


def write_simulation(data: SimulatedData, out_dir: Path) -> None:
    """out_dir/{customers,events,contacts}.parquet and out_dir/ground_truth/<name>.parquet."""
    out_dir = Path(out_dir)
    truth_dir = out_dir / GROUND_TRUTH_DIR
    truth_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        getattr(data, name).to_parquet(out_dir / f"{name}.parquet", index=False)
    for name, frame in data.truth.items():
        frame.to_parquet(truth_dir / f"{name}.parquet", index=False)


def read_simulation(out_dir: Path) -> SimulatedData:
    """The inverse of `write_simulation` (for evaluation code; features must read the contract tables only)."""
    out_dir = Path(out_dir)
    frames = {name: pd.read_parquet(out_dir / f"{name}.parquet") for name in TABLES}
    truth = {path.stem: pd.read_parquet(path) for path in sorted((out_dir / GROUND_TRUTH_DIR).glob("*.parquet"))}
    return SimulatedData(truth=truth, **frames)
