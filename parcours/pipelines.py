"""Named pipeline steps: each a plain function from the floors below, wired here and nowhere else.

The CLI runs them one by one (with progress output); `demo` runs them all. Every step reads and writes under
`settings.home`, so the same steps serve a demo workspace, a user's workspace and a test's tmp directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from journey.catalog import Catalog, load_catalog
from journey.errors import DataContractError
from journey.settings import Settings

if TYPE_CHECKING:
    from journey.contract import ValidatedData


def simulate(
    out: Path, customers: int, days: int, seed: int, start: pd.Timestamp | None, catalog: Catalog
) -> dict[str, int]:
    """Simulate the journey and write the three contract tables (+ ground truth apart) to `out`."""
    from journey.simulator import SimulationConfig, write_simulation
    from journey.simulator import simulate as run

    data = run(SimulationConfig(customers=customers, days=days, seed=seed, start=start), catalog)
    write_simulation(data, out)
    return {"customers": len(data.customers), "events": len(data.events), "contacts": len(data.contacts)}


def validate(data_dir: Path, settings: Settings, catalog: Catalog) -> ValidatedData:
    """Validate a data directory; bad rows go to `<home>/quarantine` with their reason."""
    from journey.contract import validate_dir

    return validate_dir(data_dir, catalog=catalog, quarantine_dir=settings.quarantine_dir)


def load_usable(
    data_dir: Path, settings: Settings, catalog: Catalog, as_of: pd.Timestamp | None = None
) -> ValidatedData:
    """Validated data, cut at `as_of` (only what happened strictly before it); refuses unusable data."""
    data = validate(data_dir, settings, catalog)
    if not data.usable:
        raise DataContractError(f"{data_dir}: data is unusable: " + "; ".join(data.problems))
    return cut_at(data, as_of) if as_of is not None else data


def cut_at(data: ValidatedData, as_of: pd.Timestamp) -> ValidatedData:
    """Forget everything at or after `as_of`, so a model trained 'as of' a date never sees later events."""
    from dataclasses import replace

    return replace(
        data,
        events=data.events[data.events["ts"] < as_of].reset_index(drop=True),
        contacts=data.contacts[data.contacts["ts"] < as_of].reset_index(drop=True),
    )


def data_end(data: ValidatedData) -> pd.Timestamp:
    """The next midnight after the last event: the 'now' of a dataset, where the freshest snapshot goes."""
    last = max(data.events["ts"].max(), data.contacts["ts"].max() if len(data.contacts) else data.events["ts"].max())
    return (pd.Timestamp(last).floor("D") + pd.Timedelta(days=1)).tz_convert("UTC")


@dataclass(frozen=True)
class FeatureBuild:
    snapshots: int
    rows: int
    path: Path
    latest: pd.Timestamp


def build_features(data: ValidatedData, settings: Settings, as_of: pd.Timestamp | None = None) -> FeatureBuild:
    """Offline snapshots every `snapshot_every_days` plus one at the end of the data (what serving sees)."""
    from features.build import build_features as build
    from features.build import snapshot_times
    from features.store import write_offline

    end = as_of or data_end(data)
    start = pd.Timestamp(data.events["ts"].min()).floor("D")
    grid = [t for t in snapshot_times(start, end, settings.snapshot_every_days) if t < end]
    times = sorted({*grid, end})
    snapshots = build(data.customers, data.events, data.contacts, times)
    path = write_offline(snapshots, settings)
    return FeatureBuild(snapshots=len(times), rows=len(snapshots), path=path, latest=end)


def apply_features(settings: Settings) -> None:
    from features.store import apply

    apply(settings)


def materialize(settings: Settings) -> int:
    from features.store import materialize as run

    return run(settings)


def train(
    data: ValidatedData,
    settings: Settings,
    catalog: Catalog,
    tasks: tuple[str, ...],
    max_rows: int | None = None,
) -> dict[str, Any]:
    from training.pipeline import train_all

    return train_all(data, settings, catalog, tasks=tasks, max_rows=max_rows)


def write_report(settings: Settings, name: str, payload: dict[str, Any]) -> Path:
    path = settings.root / "reports" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def catalog_for(settings: Settings) -> Catalog:
    return load_catalog(settings.catalog_path)
