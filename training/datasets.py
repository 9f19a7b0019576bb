"""Point-in-time training datasets: entity rows + labels here, features only through the Feast historical join.

Features are never computed in this module: every row asks the feature store for the latest snapshot at or
before its timestamp, exactly as serving would have seen it, so training and serving cannot drift apart.
Rows are split out of time (latest cutoffs → test) because the models predict the future.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from journey.catalog import Catalog
from journey.errors import NotReadyError
from journey.settings import Settings
from training.labels import (
    LABELS_VERSION,
    PHASE_LOOKAHEAD_DAYS,
    churn_labels,
    phase_labels,
    purchase_labels,
    response_dataset,
)

Task = Literal["phase", "churn", "purchase", "response"]
TASKS: tuple[str, ...] = ("phase", "churn", "purchase", "response")
ENTITY_COLUMNS: tuple[str, str] = ("customer_id", "event_timestamp")
ACTION_COLUMNS: tuple[str, str] = ("action_channel", "action_content")
LABEL_COLUMN = "label"
NO_CONTACTS_MESSAGE = "no logged contacts: response model skipped"


class JourneyData(Protocol):
    """What `journey.contract.validate` returns (only these attributes are read)."""

    @property
    def customers(self) -> pd.DataFrame: ...

    @property
    def events(self) -> pd.DataFrame: ...


@dataclass
class TaskDataset:
    """One model's training table: `frame[feature_names (+ ACTION_COLUMNS)]` → `frame[label]`."""

    task: str
    frame: pd.DataFrame
    feature_names: list[str]
    label: str
    split: pd.Series
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def action_columns(self) -> list[str]:
        return [c for c in ACTION_COLUMNS if c in self.frame.columns]

    def part(self, name: Literal["train", "valid", "test"]) -> pd.DataFrame:
        return self.frame.loc[self.split == name]


# --------------------------------------------------------------------------------------------------------------
# Time grid and split
# --------------------------------------------------------------------------------------------------------------


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.as_unit("us")


def cutoff_grid(
    events: pd.DataFrame, every_days: int, horizon_days: int, min_history_days: int = 28
) -> list[pd.Timestamp]:
    """Snapshot times (`features.build.snapshot_times` over the event log) usable as training cutoffs.

    A cutoff t is kept when t >= first event + `min_history_days` (features have something to describe) and
    t + horizon <= last event (the label window is fully observed; a truncated one would fake negatives).
    Using the snapshot times themselves means Feast joins each cutoff to the snapshot taken exactly at t.
    """
    from features.build import log_start, snapshot_times

    if horizon_days < 0 or min_history_days < 0:
        raise ValueError("cutoff_grid: horizon_days and min_history_days must be >= 0")
    if events.empty:
        return []
    ts = _utc(events["ts"])
    last = ts.max()
    # the snapshot grid starts where the log turns dense (as `parcours features build` does): not in an imported
    # order history that reaches back years before the behavioural events
    first = max(log_start(ts, every_days) or ts.min(), ts.min())
    grid = snapshot_times(first.floor("D"), last - pd.Timedelta(days=horizon_days), every_days)
    start = first + pd.Timedelta(days=min_history_days)
    return [pd.Timestamp(t) for t in grid if t >= start]


def out_of_time_split(timestamps: pd.Series, valid_share: float = 0.15, test_share: float = 0.15) -> pd.Series:
    """Label rows "train" / "valid" / "test" by time: the latest rows go to test, the ones just before to valid.

    Rows sharing a timestamp always share a part, so no train row is later than a valid or test row. Shares
    are shares of rows; with at least 2 (3) distinct timestamps, test (and valid) get at least one of them.
    """
    if valid_share < 0 or test_share < 0 or valid_share + test_share >= 1:
        raise ValueError("out_of_time_split: shares must be >= 0 and sum to less than 1")
    ts = _utc(timestamps)
    counts = ts.value_counts().sort_index()
    if counts.empty:
        return pd.Series([], index=timestamps.index, dtype=object, name="split")
    earlier = ((counts.cumsum() - counts) / counts.sum()).to_numpy()  # share of rows strictly before
    eps = 1e-9
    part = np.where(
        earlier >= 1 - test_share - eps,
        "test",
        np.where(earlier >= 1 - test_share - valid_share - eps, "valid", "train"),
    ).astype(object)
    if test_share > 0 and len(part) >= 2 and "test" not in part:
        part[-1] = "test"
    if valid_share > 0 and len(part) >= 3 and "valid" not in part:
        part[int(np.flatnonzero(part != "test")[-1])] = "valid"
    if len(part) >= 2 and part[0] != "train":
        part[0] = "train"
    by_time = pd.Series(part, index=counts.index)
    return pd.Series(ts.map(by_time).to_numpy(), index=timestamps.index, dtype=object, name="split")


# --------------------------------------------------------------------------------------------------------------
# Entity rows and labels
# --------------------------------------------------------------------------------------------------------------


def _entity_rows(events: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    """customers × cutoffs, keeping a customer only from their first event on (first event strictly before t)."""
    first = _utc(events["ts"]).groupby(events["customer_id"].astype(str)).min().rename("_first").reset_index()
    grid = pd.DataFrame({"event_timestamp": pd.DatetimeIndex(cutoffs).as_unit("us")})
    rows = first.merge(grid, how="cross")
    rows = rows.loc[rows["_first"] < rows["event_timestamp"], list(ENTITY_COLUMNS)]
    return rows.sort_values(["event_timestamp", "customer_id"], kind="stable").reset_index(drop=True)


def _horizon(task: str, settings: Settings) -> int:
    return {
        "purchase": settings.purchase_horizon_days,
        "churn": settings.churn_horizon_days,
        "phase": PHASE_LOOKAHEAD_DAYS,
        "response": settings.response_window_days,
    }[task]


def _labelled_cutoff_rows(
    task: str, data: JourneyData, settings: Settings, cutoffs: list[pd.Timestamp]
) -> pd.DataFrame:
    rows = _entity_rows(data.events, cutoffs)
    if task == "purchase":
        rows[LABEL_COLUMN] = purchase_labels(data.events, rows, settings.purchase_horizon_days)
    elif task == "churn":
        churn = churn_labels(data.events, rows, settings.churn_horizon_days, settings.active_window_days)
        rows[LABEL_COLUMN] = churn["label"]
        rows = rows.loc[churn["eligible"].to_numpy()].reset_index(drop=True)
    else:
        rows[LABEL_COLUMN] = phase_labels(data.customers, data.events, rows)
    return rows


def _observed_contacts(data: JourneyData, window_days: int) -> pd.DataFrame:
    """Logged contacts whose response window ends before the data does (else the label is unknown)."""
    contacts = getattr(data, "contacts", None)
    if contacts is None or contacts.empty:
        raise NotReadyError(NO_CONTACTS_MESSAGE)
    ends = [_utc(contacts["ts"]).max()]
    if not data.events.empty:
        ends.append(_utc(data.events["ts"]).max())
    data_end = max(ends)
    keep = _utc(contacts["ts"]) + pd.Timedelta(days=window_days) <= data_end
    return contacts.loc[keep.to_numpy()]


# --------------------------------------------------------------------------------------------------------------
# The decision log as training data (the feedback loop)
# --------------------------------------------------------------------------------------------------------------


@dataclass
class LoggedJourneyData:
    """Journey data plus what serving logged: decisions as contacts (with their propensities) and feedback."""

    customers: pd.DataFrame
    events: pd.DataFrame
    contacts: pd.DataFrame
    feedback: pd.DataFrame | None = None


def with_decision_log(
    data: JourneyData, logged_contacts: pd.DataFrame, feedback: pd.DataFrame | None = None
) -> LoggedJourneyData:
    """`data` with the decision log's contacts (`DecisionLog.contacts_frame()`) added and its feedback
    (`DecisionLog.feedback_frame()`) attached, so the next response model learns from the decisions served.

    A decision already in `data.contacts` (same `decision_id`, e.g. exported back through the data contract)
    is kept once, from `data`. Logged rows need `decision_id, customer_id, ts, channel, content`; their
    `propensity` is kept for off-policy evaluation and weighting.
    """
    base = getattr(data, "contacts", None)
    frames = [f for f in (base, logged_contacts) if f is not None and len(f)]
    if frames:
        for frame in frames:
            missing = [c for c in ("decision_id", "customer_id", "ts", "channel", "content") if c not in frame]
            if missing:
                raise ValueError(f"contacts: missing column(s) {missing}")
        columns = list(dict.fromkeys(c for f in frames for c in f.columns))
        contacts = pd.concat([f.reindex(columns=columns) for f in frames], ignore_index=True)
        contacts["ts"] = _utc(contacts["ts"])
        contacts = contacts.drop_duplicates("decision_id", keep="first")
        contacts = contacts.sort_values("ts", kind="stable").reset_index(drop=True)
    else:
        contacts = base if base is not None else logged_contacts
    return LoggedJourneyData(data.customers, data.events, contacts, feedback)


def from_decision_log(data: JourneyData, log_path: Any) -> LoggedJourneyData:
    """`with_decision_log` reading the SQLite decision log at `log_path` (`Settings.decision_log_path`)."""
    from pathlib import Path

    from journey.logbook import DecisionLog

    log = DecisionLog(Path(log_path))
    try:
        return with_decision_log(data, log.contacts_frame(), log.feedback_frame())
    finally:
        log.close()


# --------------------------------------------------------------------------------------------------------------
# Features (Feast only)
# --------------------------------------------------------------------------------------------------------------


def _historical_features(settings: Settings, entities: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Feast point-in-time features for `entities` (same order), plus request-time features when available.

    Duplicate (customer, time) rows — control rows repeat a decision once per content — are fetched once.
    """
    try:
        import features.store as store
    except ModuleNotFoundError as exc:  # pragma: no cover - only before the features floor exists
        raise NotReadyError("features.store is not available: build the feature store first") from exc

    keys = entities[list(ENTITY_COLUMNS)].reset_index(drop=True)
    unique = keys.drop_duplicates().reset_index(drop=True)
    fetched = store.historical_features(settings, unique)
    if (
        len(fetched) != len(unique)
        or not (fetched["customer_id"].astype(str).to_numpy() == unique["customer_id"].to_numpy()).all()
    ):
        raise RuntimeError("features.store.historical_features did not return the entity rows in order")
    names = _feature_names(fetched)
    positions = pd.MultiIndex.from_frame(unique).get_indexer(pd.MultiIndex.from_frame(keys))
    features = fetched[names].iloc[positions].reset_index(drop=True)
    features, request_names = _request_features(features, keys["event_timestamp"])
    return features, names + request_names


def _feature_names(fetched: pd.DataFrame) -> list[str]:
    from features.definitions import FEATURE_NAMES

    missing = [f for f in FEATURE_NAMES if f not in fetched.columns]
    if missing:
        raise RuntimeError(f"features.store.historical_features is missing feature columns {missing}")
    return list(FEATURE_NAMES)


def _request_features(features: pd.DataFrame, timestamps: pd.Series) -> tuple[pd.DataFrame, list[str]]:
    """Add request-time features (derived from the decision time alone) when the features floor offers them."""
    try:
        from features.request import add_request_features
    except ModuleNotFoundError:
        return features, []
    before = list(features.columns)
    returned = add_request_features(features, timestamps)
    out = features if returned is None else returned
    return out, [c for c in out.columns if c not in before]


# --------------------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------------------


def _subsample(rows: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """A seeded sample that keeps the original (time) order, so the same inputs give the same dataset."""
    if max_rows is None or len(rows) <= max_rows:
        return rows
    return rows.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)


def frame_sha256(frame: pd.DataFrame) -> str:
    """Stable fingerprint of a training table (column names, dtypes and values; not the index)."""
    digest = hashlib.sha256()
    digest.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _positives(task: str, labels: pd.Series) -> int | dict[str, int]:
    if task == "phase":
        return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}
    return int(labels.sum())


def _meta(task: str, data: JourneyData, frame: pd.DataFrame, split: pd.Series, **extra: Any) -> dict[str, Any]:
    ts = _utc(data.events["ts"])
    return {
        "task": task,
        "labels_version": LABELS_VERSION,
        "data_start": ts.min().isoformat() if len(ts) else None,
        "data_end": ts.max().isoformat() if len(ts) else None,
        "rows": len(frame),
        "positives": _positives(task, frame[LABEL_COLUMN]),
        "split_rows": {k: int(v) for k, v in split.value_counts().items()},
        "training_set_sha256": frame_sha256(frame),
        **extra,
    }


def _cutoff_task(task: str, data: JourneyData, settings: Settings, max_rows: int | None, seed: int) -> TaskDataset:
    horizon = _horizon(task, settings)
    cutoffs = cutoff_grid(data.events, settings.snapshot_every_days, horizon)
    if not cutoffs:
        raise NotReadyError(
            f"{task}: the events do not span 28 days of history plus a {horizon}-day label horizon; "
            "no training cutoff fits"
        )
    rows = _subsample(_labelled_cutoff_rows(task, data, settings, cutoffs), max_rows, seed)
    features, names = _historical_features(settings, rows)
    frame = pd.concat([rows[list(ENTITY_COLUMNS)], features, rows[[LABEL_COLUMN]]], axis=1)
    split = out_of_time_split(frame["event_timestamp"])
    meta = _meta(
        task,
        data,
        frame,
        split,
        horizon_days=horizon,
        cutoffs=[t.isoformat() for t in cutoffs],
        every_days=settings.snapshot_every_days,
        max_rows=max_rows,
        seed=seed,
    )
    return TaskDataset(task, frame, names, LABEL_COLUMN, split, meta)


def _response_task(
    data: JourneyData, settings: Settings, catalog: Catalog, max_rows: int | None, seed: int
) -> TaskDataset:
    window = settings.response_window_days
    contacts = _observed_contacts(data, window)
    feedback = getattr(data, "feedback", None)
    rows = response_dataset(
        contacts,
        data.events,
        catalog,
        window,
        feedback=feedback,
        count_responses=settings.response_label == "engagement",
    )
    if not (rows["action_channel"] != "none").any():
        raise NotReadyError(f"{NO_CONTACTS_MESSAGE} (no treated contact with a full {window}-day window)")
    rows = _subsample(rows, max_rows, seed)
    features, names = _historical_features(settings, rows)
    frame = pd.concat([rows[list(ENTITY_COLUMNS)], features, rows.drop(columns=list(ENTITY_COLUMNS))], axis=1)
    split = out_of_time_split(frame["event_timestamp"])
    treated = frame["action_channel"] != "none"
    meta = _meta(
        "response",
        data,
        frame,
        split,
        horizon_days=window,
        window_days=window,
        contacts_from=frame["event_timestamp"].min().isoformat(),
        contacts_to=frame["event_timestamp"].max().isoformat(),
        treated_rows=int(treated.sum()),
        control_rows=int((~treated).sum()),
        decisions=int(frame["decision_id"].nunique()),
        response_label=settings.response_label,
        feedback_rows=0 if feedback is None else len(feedback),
        action_columns={"action_channel": list(catalog.channel_names), "action_content": list(catalog.content_names)},
        max_rows=max_rows,
        seed=seed,
    )
    return TaskDataset("response", frame, names, LABEL_COLUMN, split, meta)


def build_task_dataset(
    task: Task,
    data: JourneyData,
    settings: Settings,
    catalog: Catalog,
    max_rows: int | None = None,
    seed: int = 0,
) -> TaskDataset:
    """The training table for one model; features from the Feast offline store (build it first).

    Raises NotReadyError when the data cannot support the task (too short a history; no logged contacts for
    "response" — message "no logged contacts: response model skipped").
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if task == "response":
        return _response_task(data, settings, catalog, max_rows, seed)
    return _cutoff_task(task, data, settings, max_rows, seed)
