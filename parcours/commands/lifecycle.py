"""Model lifecycle: compare, promote, models history, ui, retrain, schedule (issue: model lifecycle).

Heavy libraries (mlflow, feast, lightgbm) are imported inside the commands so `parcours --help` stays instant.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from journey.errors import ParcoursError
from journey.settings import Settings
from parcours.console import console

if TYPE_CHECKING:
    from training.compare import Comparison
    from training.promotion import PromotionOutcome

ALL_TASKS: tuple[str, ...] = ("phase", "churn", "purchase", "response")
DEMO_DATA = Path("data/demo")

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", envvar="PARCOURS_HOME", help="Workspace for data, feature store, mlruns and logs."),
]
DataOption = Annotated[
    Path, typer.Option("--data", help="Data directory (customers, events[, contacts]); relative to --home.")
]
TaskOption = Annotated[list[str] | None, typer.Option("--task", help="Task(s) (default: all registered).")]

models_app = typer.Typer(help="Registered models: alias history.", no_args_is_help=True)


def _settings(home: Path | None) -> Settings:
    if home is not None:
        os.environ["PARCOURS_HOME"] = str(home)
    settings = Settings()
    settings.root.mkdir(parents=True, exist_ok=True)
    return settings


def _data_dir(settings: Settings, path: Path) -> Path:
    return path if path.is_absolute() else settings.root / path


def _tasks(task: list[str] | None) -> tuple[str, ...]:
    chosen = tuple(task or ALL_TASKS)
    unknown = [t for t in chosen if t not in ALL_TASKS]
    if unknown:
        raise typer.BadParameter(f"unknown task(s) {unknown}; expected some of {list(ALL_TASKS)}", param_hint="--task")
    return chosen


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=code)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4f}"
    return "" if value is None else str(value)


# -------------------------------------------------------------------------------------------------- compare
def _print_comparison(comparison: Comparison) -> None:
    a, b = comparison.a, comparison.b
    holdout = comparison.holdout.describe()
    table = Table(
        "metric",
        a.name,
        b.name,
        "b − a",
        title=f"{comparison.task}: {holdout['rows']:,} holdout rows ({holdout['split']}), "
        f"{holdout['start']} → {holdout['end']}",
    )
    for row in comparison.table().itertuples(index=False):
        style = "bold" if row.metric == comparison.primary else None
        table.add_row(str(row.metric), _fmt(row.a), _fmt(row.b), _fmt(row.b_minus_a), style=style)
    console.print(table)
    for scored in (a, b):
        for note in [*scored.notes, *scored.sanity.problems]:
            console.print(f"  [yellow]{scored.name}:[/yellow] {note}")
    if comparison.run_id:
        console.print(f"  logged as MLflow run {comparison.run_id}")


def _load_data(settings: Settings, data: Path) -> Any:
    from parcours import pipelines

    catalog = pipelines.catalog_for(settings)
    return pipelines.load_usable(_data_dir(settings, data), settings, catalog), catalog


def compare(
    a: Annotated[str, typer.Option("--a", help="Alias of model A.")] = "champion",
    b: Annotated[str, typer.Option("--b", help="Alias of model B.")] = "challenger",
    a_version: Annotated[int | None, typer.Option("--a-version", help="Version number of A (overrides --a).")] = None,
    b_version: Annotated[int | None, typer.Option("--b-version", help="Version number of B (overrides --b).")] = None,
    task: TaskOption = None,
    data: DataOption = DEMO_DATA,
    max_rows: Annotated[int | None, typer.Option(min=1, help="Cap dataset rows (deterministic sample).")] = None,
    home: HomeOption = None,
) -> None:
    """Score two registered models on the SAME most recent holdout; print and log the comparison in MLflow."""
    settings = _settings(home)
    try:
        from training.compare import compare_models
        from training.registry import get_version

        tasks = _tasks(task)
        if (a_version is not None or b_version is not None) and len(tasks) != 1:
            raise typer.BadParameter(
                "version numbers belong to one model: give exactly one --task", param_hint="--task"
            )
        dataset, catalog = _load_data(settings, data)
        for name in tasks:
            if task is None and get_version(name, "champion", settings) is None:
                continue  # nothing registered for this task (e.g. no contacts → no response model)
            comparison = compare_models(
                name, dataset, settings, catalog, a=a, b=b, a_version=a_version, b_version=b_version, max_rows=max_rows
            )
            _print_comparison(comparison)
    except ParcoursError as error:
        raise _fail(str(error)) from error


# -------------------------------------------------------------------------------------------------- promote
def _print_outcomes(outcomes: list[PromotionOutcome]) -> None:
    table = Table("task", "champion before", "challenger", "decision", "champion after", "why")
    for o in outcomes:
        verdict = "[green]promoted[/green]" if o.promoted else "kept"
        if o.forced:
            verdict = "[yellow]forced[/yellow]"
        table.add_row(o.task, _fmt(o.champion_before), _fmt(o.challenger), verdict, _fmt(o.champion_after), o.reason)
    console.print(table)


def promote(
    task: TaskOption = None,
    margin: Annotated[float | None, typer.Option(min=0.0, help="Primary-metric gain needed.")] = None,
    tolerance: Annotated[float | None, typer.Option(min=0.0, help="Allowed regression elsewhere.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the rule says no (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the alias history).")] = None,
    data: DataOption = DEMO_DATA,
    max_rows: Annotated[int | None, typer.Option(min=1, help="Cap holdout dataset rows.")] = None,
    home: HomeOption = None,
) -> None:
    """Make `challenger` the `champion` if it wins on the primary metric by the margin, regresses nothing
    beyond the tolerance and passes sanity checks (AUC; macro-F1 for phase), on the current holdout."""
    settings = _settings(home)
    if force and not (reason and reason.strip()):
        raise _fail("--force needs --reason: every forced promotion must say why")
    try:
        from training.compare import compare_models
        from training.promotion import promote as run_promotion
        from training.registry import get_version

        dataset, catalog = _load_data(settings, data)
        outcomes = []
        for name in _tasks(task):
            if task is None and get_version(name, "challenger", settings) is None:
                continue
            comparison = None
            champion, challenger = get_version(name, "champion", settings), get_version(name, "challenger", settings)
            if champion and challenger and champion.version != challenger.version:
                comparison = compare_models(name, dataset, settings, catalog, max_rows=max_rows)
                _print_comparison(comparison)
            outcomes.append(
                run_promotion(
                    name,
                    dataset,
                    settings,
                    catalog,
                    settings.promotion_margin if margin is None else margin,
                    settings.promotion_tolerance if tolerance is None else tolerance,
                    force=force,
                    reason=reason,
                    comparison=comparison,
                )
            )
        _print_outcomes(outcomes)
    except ParcoursError as error:
        raise _fail(str(error)) from error


# -------------------------------------------------------------------------------------------------- history
@models_app.command("history")
def models_history(
    task: TaskOption = None,
    at: Annotated[
        datetime | None, typer.Option("--at", help="Also say which version was champion at this time (UTC).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Every alias move (when, alias, version, who, why); with --at, the champion at that moment."""
    from training.promotion import alias_moves, champion_at

    settings = _settings(home)
    for name in _tasks(task):
        moves = alias_moves(name, settings)
        if moves.empty:
            if task is not None:
                console.print(f"{name}: no registered versions")
            continue
        table = Table(
            "when (UTC)", "alias", "action", "version", "from/to", "who", "why", title=settings.model_name(name)
        )
        for row in moves.to_dict("records"):
            other = row["previous_version"] if row["action"] == "set" else row["next_version"]
            table.add_row(
                row["when"].strftime("%Y-%m-%d %H:%M:%S"),
                str(row["alias"]),
                str(row["action"]),
                f"v{row['version']}",
                f"v{other}" if isinstance(other, str) and other else "",
                str(row["who"]),
                str(row["why"]),
            )
        console.print(table)
        if at is not None:
            version = champion_at(name, at, settings)
            console.print(f"{name}: champion at {at.isoformat()} = {'none' if version is None else 'v' + version}")


# ------------------------------------------------------------------------------------------------------- ui
def ui_command(settings: Settings, port: int) -> list[str]:
    """`mlflow ui` on the workspace store, bound to loopback, one worker."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.tracking_uri,
        "--default-artifact-root",
        settings.artifact_root,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port on 127.0.0.1.")] = 5000,
    home: HomeOption = None,
) -> None:
    """Open the MLflow UI on this workspace's tracking store (http://127.0.0.1:PORT) — Ctrl+C to stop."""
    from training.tracking import configure_mlflow

    settings = _settings(home)
    configure_mlflow(settings)  # creates and migrates the store if needed, so the UI never starts on nothing
    # Without this, `mlflow server` starts job-runner processes that outlive SIGTERM.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    console.print(f"MLflow UI on http://127.0.0.1:{port} ({settings.tracking_uri}) — Ctrl+C to stop")
    process = subprocess.Popen(ui_command(settings, port), env=env, start_new_session=True)

    def stop(signum: int, frame: Any) -> None:
        del signum, frame
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(process)
    raise typer.Exit(code=code)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the UI and the workers it started (its own process group), politely then firmly."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------------------------------- retrain
def _retrain_once(settings: Settings, options: Any) -> int:
    from parcours.jobs.retrain import RetrainBusyError, run_retrain, summary_text

    try:
        report = run_retrain(options, settings)
    except RetrainBusyError as error:
        console.print(f"[red]error:[/red] {error}")
        return 3
    console.print(summary_text(report))
    console.print(f"report: {report.report_path}")
    return report.exit_code


def _options(data: Path, settings: Settings, task: list[str] | None, max_rows: int | None, **extra: Any) -> Any:
    from parcours.jobs.retrain import RetrainOptions

    return RetrainOptions(data_dir=_data_dir(settings, data), tasks=_tasks(task), max_rows=max_rows, **extra)


def retrain(
    data: DataOption = DEMO_DATA,
    task: TaskOption = None,
    max_rows: Annotated[int | None, typer.Option(min=1, help="Cap rows per task.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if the data did not change.")] = False,
    no_decision_log: Annotated[
        bool, typer.Option("--no-decision-log", help="Do not add the decisions logged by serving.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """The scheduled job: refresh features → datasets (+ logged decisions) → train → compare → promote if
    better. Exit 0 on success, 1 on any failure (champion untouched), 3 if another retrain is running."""
    settings = _settings(home)
    options = _options(data, settings, task, max_rows, force=force, use_decision_log=not no_decision_log)
    raise typer.Exit(code=_retrain_once(settings, options))


def schedule(
    cron: Annotated[str | None, typer.Option("--cron", help="Five-field cron, UTC (default: settings).")] = None,
    data: DataOption = DEMO_DATA,
    task: TaskOption = None,
    max_rows: Annotated[int | None, typer.Option(min=1, help="Cap rows per task.")] = None,
    max_runs: Annotated[int | None, typer.Option(min=1, help="Stop after this many runs (default: never).")] = None,
    home: HomeOption = None,
) -> None:
    """Run `retrain` in this process on a cron schedule (UTC); a failed run is reported and the loop goes on."""
    from parcours.jobs.cron import CronError, parse_cron

    settings = _settings(home)
    expression = cron or settings.retrain_cron
    try:
        schedule_ = parse_cron(expression)
    except CronError as error:
        raise typer.BadParameter(str(error), param_hint="--cron") from error
    options = _options(data, settings, task, max_rows)
    runs = 0
    while max_runs is None or runs < max_runs:
        due = schedule_.next_after(datetime.now(UTC))
        console.print(f"next retrain at {due.isoformat()} ({expression!r})")
        _sleep_until(due)
        code = _retrain_once(settings, options)
        runs += 1
        console.print(f"retrain run {runs} finished with exit code {code}")


def _sleep_until(due: datetime) -> None:
    """Sleep in short steps so a clock change or Ctrl+C is noticed promptly."""
    while (left := (due - datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(left, 30.0))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `parcours` app."""
    app.command()(compare)
    app.command()(promote)
    app.command()(ui)
    app.command()(retrain)
    app.command()(schedule)
    app.add_typer(models_app, name="models")
