"""Named pipeline steps: each a plain function from the floors below, wired here and nowhere else.

The CLI runs them one by one (with progress output); `demo` runs them all. Every step reads and writes under
`settings.home`, so the same steps serve a demo workspace, a user's workspace and a test's tmp directory.
"""

from __future__ import annotations

import json
import weakref
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
    data = with_ingested(data, settings)
    result = cut_at(data, as_of) if as_of is not None else data
    _SOURCES[id(result)] = (weakref.ref(result), Path(data_dir))
    return result


# which data directory each dataset returned by `load_usable` came from, so `build_features` can record it
_SOURCES: dict[int, tuple[weakref.ref[ValidatedData], Path]] = {}


def _source_of(data: ValidatedData) -> Path | None:
    ref, path = _SOURCES.get(id(data), (None, None))
    return path if ref is not None and ref() is data else None


def with_ingested(data: ValidatedData, settings: Settings) -> ValidatedData:
    """The dataset plus every event ingested in real time (`POST /v1/events`), so offline builds and training see
    them; exact duplicates of rows already in the data count once (journey.eventlog.merge_ingested)."""
    from dataclasses import replace

    from journey.eventlog import event_log_path, merge_ingested, read_ingested

    ingested = read_ingested(event_log_path(settings))
    if ingested.empty:
        return data
    customers, events = merge_ingested(data.customers, data.events, ingested)
    return replace(data, customers=customers, events=events)


def cut_at(data: ValidatedData, as_of: pd.Timestamp) -> ValidatedData:
    """Forget everything at or after `as_of`, so a model trained 'as of' a date never sees later events.

    Consent is today's state; a customer who unsubscribed from a channel at or after `as_of` still had that
    consent at `as_of`, so it is given back (dropping the unsubscribe alone would make it look never given).
    """
    from dataclasses import replace

    from journey.vocabulary import CONSENT_COLUMNS, EventType

    later = data.events[(data.events["ts"] >= as_of) & (data.events["event_type"] == EventType.UNSUBSCRIBE.value)]
    customers = data.customers.copy()
    for channel, column in CONSENT_COLUMNS.items():
        if column in customers.columns:
            revoked_later = set(later.loc[later["channel"] == channel, "customer_id"])
            customers.loc[customers["customer_id"].isin(revoked_later), column] = True
    return replace(
        data,
        customers=customers,
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


def build_features(
    data: ValidatedData, settings: Settings, as_of: pd.Timestamp | None = None, data_dir: Path | None = None
) -> FeatureBuild:
    """Offline snapshots every `snapshot_every_days` plus one at the end of the data (what serving sees).

    Also records the source (`feature_store/source.json`: data directory, as_of, cadence) with the validated tables
    sorted by customer, which the real-time refresh reads (features.realtime). `data_dir` defaults to the
    directory `load_usable` read `data` from.
    """
    from features.build import build_features as build
    from features.build import log_start, snapshot_plan
    from features.realtime import write_source
    from features.store import write_offline

    # Never stamp a snapshot in the future: once today's ingested events are merged, the data ends today.
    end = as_of or min(data_end(data), pd.Timestamp.now(tz="UTC"))
    every = settings.snapshot_every_days
    times = snapshot_plan(log_start(data.events["ts"], every), end, every)
    snapshots = build(data.customers, data.events, data.contacts, times)
    path = write_offline(snapshots, settings)
    tables = {"customers": data.customers, "events": data.events, "contacts": data.contacts}
    write_source(settings, data_dir or _source_of(data), as_of, end, tables)
    return FeatureBuild(snapshots=len(times), rows=len(snapshots), path=path, latest=end)


def apply_features(settings: Settings) -> None:
    from features.store import apply

    apply(settings)


def materialize(settings: Settings, full: bool = False) -> int:
    """Load the latest features online; only customers whose snapshot changed unless `full`."""
    from features.store import materialize as run

    return run(settings, full=full)


def train(
    data: ValidatedData,
    settings: Settings,
    catalog: Catalog,
    tasks: tuple[str, ...],
    max_rows: int | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Train and register every task; on simulated data the latent phase (ground truth) is used for REPORTING."""
    from training.pipeline import load_phase_truth, train_all

    truth = load_phase_truth(data_dir) if data_dir is not None else None
    return train_all(data, settings, catalog, tasks=tasks, max_rows=max_rows, phase_truth=truth)


def write_report(settings: Settings, name: str, payload: dict[str, Any]) -> Path:
    path = settings.root / "reports" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def catalog_for(settings: Settings) -> Catalog:
    return load_catalog(settings.catalog_path)
