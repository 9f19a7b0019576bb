"""The retraining job a scheduler runs: refresh features → datasets (+ logged decisions) → train → compare →
promote if better, with a report.

Guarantees:
- one run at a time per workspace: an exclusive `flock` on `<home>/retrain.lock` (released by the kernel if the
  process dies, so a crash never leaves a stale lock); a second run fails at once with `RetrainBusyError`;
- any failure leaves `champion` where it was: promotions are decided for every task first and applied only
  when all of training and comparison succeeded; if applying fails half-way, or training bootstrapped a
  champion in a run that then failed, the champions are restored to what they were when the run started;
- idempotent: the same input data (same fingerprint as the last successful run) is not retrained unless
  forced; re-running after a failure simply tries again;
- every run, successful or not, writes `reports/retrain-<timestamp>.json` and a `.txt` summary.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast

import pandas as pd
from pydantic import BaseModel, Field

from journey.errors import ParcoursError
from journey.scoring import TASKS
from journey.settings import Settings
from parcours import pipelines

if TYPE_CHECKING:
    from journey.catalog import Catalog
    from journey.contract import ValidatedData
    from training.promotion import PromotionOutcome

log = logging.getLogger(__name__)

LOCK_NAME = "retrain.lock"
TrainFn = Callable[["ValidatedData", Settings, "Catalog", tuple[str, ...], int | None, Path], dict[str, Any]]


class Tables(Protocol):
    """The three contract tables (`journey.contract.ValidatedData` is one; tests use a small dataclass)."""

    @property
    def customers(self) -> pd.DataFrame: ...

    @property
    def events(self) -> pd.DataFrame: ...

    @property
    def contacts(self) -> pd.DataFrame: ...


D = TypeVar("D", bound=Tables)


class RetrainBusyError(ParcoursError):
    """Another retrain holds the workspace lock."""


class RetrainOptions(BaseModel):
    """What a retrain run is asked to do (the CLI and the scheduler build this)."""

    data_dir: Path
    tasks: tuple[str, ...] = TASKS
    max_rows: int | None = Field(default=None, ge=1)
    margin: float | None = Field(default=None, ge=0.0, description="Default: settings.promotion_margin.")
    tolerance: float | None = Field(default=None, ge=0.0, description="Default: settings.promotion_tolerance.")
    force: bool = Field(default=False, description="Retrain even if the data did not change since the last run.")
    use_decision_log: bool = Field(default=True, description="Add decisions logged by serving to the contacts.")


@dataclass
class RetrainReport:
    started: str
    data_dir: str
    status: Literal["running", "succeeded", "failed", "up-to-date"] = "running"
    finished: str | None = None
    fingerprint: str | None = None
    contacts_from_decision_log: int = 0
    champions_before: dict[str, str | None] = field(default_factory=dict)
    champions_after: dict[str, str | None] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    restored: list[str] = field(default_factory=list)
    report_path: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "failed" else 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


# ------------------------------------------------------------------------------------------------------- lock
@contextmanager
def retrain_lock(settings: Settings) -> Iterator[Path]:
    """Hold `<home>/retrain.lock` exclusively for the duration; raise RetrainBusyError if someone else does."""
    path = settings.root / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RetrainBusyError(
                f"another retrain is running in {settings.root} ({holder}); lock file {path}. "
                "Wait for it to finish — the lock is released automatically when that process exits."
            ) from error
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
        handle.flush()
        yield path
    finally:
        handle.close()  # closing the descriptor releases the flock


# ------------------------------------------------------------------------------------------------------- data
def merge_decision_log(data: D, settings: Settings) -> tuple[D, int]:
    """The validated data plus what serving logged, read once: its decisions as contacts (each once, known
    customers only) and its feedback, which the response labels read. Returns (data, contacts added)."""
    from journey.logbook import DecisionLog
    from training.datasets import with_decision_log

    path = settings.decision_log_path
    if not path.exists():
        return data, 0
    decision_log = DecisionLog(path)
    try:
        logged, feedback = decision_log.contacts_frame(), decision_log.feedback_frame()
    finally:
        decision_log.close()
    known_customers = set(data.customers["customer_id"].astype(str))
    logged = logged[logged["customer_id"].astype(str).isin(known_customers)]
    merged = with_decision_log(data, logged, feedback if len(feedback) else None)
    added = len(merged.contacts) - len(data.contacts)
    if added == 0 and merged.feedback is None:
        return data, 0
    return cast(D, merged), added


def data_fingerprint(data: Tables, settings: Settings, tasks: tuple[str, ...]) -> str:
    """What a retrain depends on: the three tables' content, the label horizons and the tasks."""
    digest = hashlib.sha256()
    for frame in (data.customers, data.events, data.contacts):
        digest.update(",".join(map(str, frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    knobs = (settings.purchase_horizon_days, settings.churn_horizon_days, settings.response_window_days, tasks)
    digest.update(repr(knobs).encode())
    return digest.hexdigest()[:20]


def _last_success(settings: Settings) -> dict[str, Any] | None:
    reports = (settings.root / "reports").glob("retrain-*.json")
    for path in sorted(reports, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        try:
            payload: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if payload.get("status") in {"succeeded", "up-to-date"}:
            return payload
    return None


# -------------------------------------------------------------------------------------------------- training
def default_train(
    data: ValidatedData,
    settings: Settings,
    catalog: Catalog,
    tasks: tuple[str, ...],
    max_rows: int | None,
    data_dir: Path,
) -> dict[str, Any]:
    from training.pipeline import load_phase_truth, train_all

    truth = load_phase_truth(data_dir)  # simulated data only: reporting, never a feature
    return train_all(data, settings, catalog, tasks=tasks, max_rows=max_rows, phase_truth=truth)


def _champions(settings: Settings, tasks: tuple[str, ...]) -> dict[str, str | None]:
    from training.registry import CHAMPION, get_version

    out: dict[str, str | None] = {}
    for task in tasks:
        ref = get_version(task, CHAMPION, settings)
        out[task] = ref.version if ref else None
    return out


def _restore_champions(before: dict[str, str | None], settings: Settings) -> list[str]:
    """Put `champion` back where it was for every task whose alias moved during this run."""
    from mlflow import MlflowClient

    from training.registry import CHAMPION, set_alias

    restored = []
    now = _champions(settings, tuple(before))
    for task, version in before.items():
        if now.get(task) == version:
            continue
        if version is None:
            client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
            client.delete_registered_model_alias(settings.model_name(task), CHAMPION)
        else:
            set_alias(task, CHAMPION, version, settings, reason="retrain failed: champion restored")
        restored.append(f"{task}: {now.get(task)} -> {version}")
    return restored


def _task_entry(result: Any, outcome: PromotionOutcome | None) -> dict[str, Any]:
    version = getattr(result, "version", None)
    entry: dict[str, Any] = {
        "status": getattr(result, "status", "unknown"),
        "message": getattr(result, "message", ""),
        "version": version.version if version is not None else None,
    }
    if outcome is not None:
        entry["promotion"] = {
            "promote": outcome.promoted,
            "reason": outcome.reason,
            "champion_before": outcome.champion_before,
            "challenger": outcome.challenger,
            "checks": list(outcome.checks),
        }
        if outcome.comparison is not None:
            c = outcome.comparison
            entry["comparison"] = {
                "run_id": c.run_id,
                "holdout": c.holdout.describe(),
                "champion": {k: round(v, 6) for k, v in c.a.metrics.items()},
                "challenger": {k: round(v, 6) for k, v in c.b.metrics.items()},
                "notes": {"champion": c.a.notes, "challenger": c.b.notes},
            }
    return entry


def _run_steps(
    report: RetrainReport, options: RetrainOptions, settings: Settings, train: TrainFn, catalog: Catalog
) -> None:
    from training.promotion import apply_promotion, plan_promotion

    log.info("retrain: validating %s", options.data_dir)
    data = pipelines.load_usable(options.data_dir, settings, catalog)
    if options.use_decision_log:
        data, report.contacts_from_decision_log = merge_decision_log(data, settings)
    report.fingerprint = data_fingerprint(data, settings, options.tasks)
    last = _last_success(settings)
    if not options.force and last and last.get("fingerprint") == report.fingerprint:
        report.status = "up-to-date"
        report.tasks = {t: {"status": "unchanged data: not retrained"} for t in options.tasks}
        return
    log.info("retrain: %d contacts added from the decision log; refreshing features", report.contacts_from_decision_log)
    pipelines.build_features(data, settings, data_dir=options.data_dir)
    pipelines.apply_features(settings)
    pipelines.materialize(settings)
    log.info("retrain: training %s", ", ".join(options.tasks))
    results = train(data, settings, catalog, options.tasks, options.max_rows, options.data_dir)
    failed = {t: r for t, r in results.items() if getattr(r, "status", "failed") == "failed"}
    report.tasks = {t: _task_entry(r, None) for t, r in results.items()}
    if failed:
        raise RuntimeError("training failed for " + "; ".join(f"{t}: {r.message}" for t, r in failed.items()))
    margin = settings.promotion_margin if options.margin is None else options.margin
    tolerance = settings.promotion_tolerance if options.tolerance is None else options.tolerance
    log.info("retrain: comparing challengers with champions on the current holdout")
    plans = {
        task: plan_promotion(task, data, settings, catalog, margin, tolerance)
        for task, result in results.items()
        if result.status == "trained"
    }
    for task, plan in plans.items():  # all decided: only now does anything move
        apply_promotion(plan, settings)
        report.tasks[task] = _task_entry(results[task], plan)
    report.status = "succeeded"


def run_retrain(options: RetrainOptions, settings: Settings, train: TrainFn | None = None) -> RetrainReport:
    """Run the whole job under the workspace lock; never raises for a failed step (see `report.status`),
    only RetrainBusyError when another run holds the lock."""
    report = RetrainReport(started=_now(), data_dir=str(options.data_dir))
    with retrain_lock(settings):
        try:
            catalog = pipelines.catalog_for(settings)
            report.champions_before = _champions(settings, options.tasks)
            _run_steps(report, options, settings, train or default_train, catalog)
        except Exception as error:
            log.exception("retrain failed")
            report.status = "failed"
            report.error = f"{type(error).__name__}: {error}"
            report.traceback = traceback.format_exc()
            try:
                report.restored = _restore_champions(report.champions_before, settings)
            except Exception as restore_error:  # report it; the run is failed anyway
                report.restored = [f"restore failed: {type(restore_error).__name__}: {restore_error}"]
        finally:
            report.finished = _now()
            try:
                report.champions_after = _champions(settings, options.tasks)
            except Exception:  # the registry itself may be what failed
                report.champions_after = {}
            write_report(report, settings)
    return report


# ----------------------------------------------------------------------------------------------------- report
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def summary_text(report: RetrainReport) -> str:
    """A few lines a human reads in the morning."""
    lines = [
        f"retrain {report.status} — {report.started} → {report.finished}",
        f"data: {report.data_dir} (fingerprint {report.fingerprint}); "
        f"{report.contacts_from_decision_log} contacts added from the decision log",
    ]
    for task, entry in report.tasks.items():
        promotion = entry.get("promotion") or {}
        line = f"  {task}: {entry.get('status')}"
        if entry.get("version"):
            line += f", new version v{entry['version']}"
        if promotion:
            verdict = "PROMOTED" if promotion["promote"] else "kept champion"
            line += f" — {verdict} (champion was v{promotion['champion_before']}): {promotion['reason']}"
        elif entry.get("message"):
            line += f" — {entry['message']}"
        lines.append(line)
    if report.error:
        lines.append(f"error: {report.error}")
    if report.restored:
        lines.append("champions restored: " + "; ".join(report.restored))
    lines.append("champions now: " + ", ".join(f"{t} v{v}" for t, v in report.champions_after.items()))
    return "\n".join(lines)


def write_report(report: RetrainReport, settings: Settings) -> Path:
    """reports/retrain-<UTC timestamp>.json and .txt (a numeric suffix if two runs share a second)."""
    directory = settings.root / "reports"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path, n = directory / f"retrain-{stamp}.json", 1
    while path.exists():
        path, n = directory / f"retrain-{stamp}-{n}.json", n + 1
    report.report_path = str(path)
    path.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    path.with_suffix(".txt").write_text(summary_text(report) + "\n")
    return path
