"""`parcours`: the command line wiring simulation, validation, features, training and serving.

Heavy libraries (feast, mlflow, lightgbm) are imported inside the commands, so `parcours --help` is instant.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pandas as pd
import typer
from rich.table import Table

from journey.errors import ParcoursError
from journey.scoring import TASKS
from journey.settings import Settings
from parcours import pipelines
from parcours.console import console, quiet_stdout, setup_logging, step

app = typer.Typer(
    name="parcours",
    help="Next-best-action engine for customer journeys: which channel, which content, or no contact.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
features_app = typer.Typer(help="Build, register and serve behavioural features (Feast).", no_args_is_help=True)
app.add_typer(features_app, name="features")

T = TypeVar("T")

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", envvar="PARCOURS_HOME", help="Workspace for data, feature store, mlruns and logs."),
]
DataOption = Annotated[Path, typer.Option("--data", help="Directory with customers, events[, contacts] tables.")]
AsOfOption = Annotated[
    datetime | None, typer.Option("--as-of", help="Use only events strictly before this date (UTC).")
]
DEMO_DATA = Path("data/demo")


def _settings(home: Path | None, **overrides: Any) -> Settings:
    if home is not None:
        os.environ["PARCOURS_HOME"] = str(home)
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    settings.root.mkdir(parents=True, exist_ok=True)
    return settings


def _run(action: Callable[[], T]) -> T:
    """Run a command body; a user's mistake (ParcoursError) is printed cleanly and exits with code 2."""
    try:
        return action()
    except ParcoursError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc


def _utc(value: datetime | None) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _resolve(settings: Settings, path: Path) -> Path:
    return path if path.is_absolute() else settings.root / path


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs.")] = False) -> None:
    setup_logging(verbose)


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(min=1, help="Number of customers (and visitors).")] = 20_000,
    days: Annotated[int, typer.Option(min=1, help="Days of history.")] = 180,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 42,
    start: Annotated[datetime | None, typer.Option(help="First day (UTC). Default: so that data ends today.")] = None,
    out: Annotated[Path, typer.Option(help="Output directory (relative paths are under --home).")] = DEMO_DATA,
    home: HomeOption = None,
) -> None:
    """Simulate customer journeys into the data contract (ground truth goes to OUT/ground_truth)."""
    settings = _settings(home)
    target = _resolve(settings, out)

    def body() -> None:
        with step(f"Simulating {customers:,} customers × {days} days (seed {seed})"):
            counts = pipelines.simulate(target, customers, days, seed, _utc(start), pipelines.catalog_for(settings))
        console.print(f"  wrote {target}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))

    _run(body)


@app.command()
def validate(
    data: Annotated[Path, typer.Argument(help="Directory with customers, events[, contacts] (CSV or Parquet).")],
    home: HomeOption = None,
) -> None:
    """Check a dataset against the data contract; bad rows are quarantined with their reason."""
    settings = _settings(home)

    def body() -> None:
        with step(f"Validating {data}"):
            result = pipelines.validate(data, settings, pipelines.catalog_for(settings))
        table = Table("table", "rows", "valid", "quarantined", "top reasons")
        for report in result.reports:
            reasons = sorted(report.reasons.items(), key=lambda kv: -kv[1])[:3]
            table.add_row(
                report.table,
                f"{report.rows_in:,}",
                f"{report.rows_valid:,}",
                f"{report.rows_quarantined:,}",
                "; ".join(f"{reason} ({n})" for reason, n in reasons),
            )
        console.print(table)
        if any(r.rows_quarantined for r in result.reports):
            console.print(f"  quarantined rows and their reasons: {settings.quarantine_dir}")
        if not result.usable:
            console.print("[red]unusable:[/red] " + "; ".join(result.problems))
            raise typer.Exit(code=1)

    _run(body)


@features_app.command("build")
def features_build(data: DataOption = DEMO_DATA, as_of: AsOfOption = None, home: HomeOption = None) -> None:
    """Compute point-in-time feature snapshots into the offline store."""
    settings = _settings(home)

    def body() -> None:
        catalog = pipelines.catalog_for(settings)
        dataset = pipelines.load_usable(_resolve(settings, data), settings, catalog, _utc(as_of))
        with step("Building feature snapshots"):
            build = pipelines.build_features(dataset, settings, _utc(as_of))
        console.print(f"  {build.rows:,} rows in {build.snapshots} snapshots → {build.path}")

    _run(body)


@features_app.command("apply")
def features_apply(home: HomeOption = None) -> None:
    """Register entities, sources, feature views and the `nba` feature service in the Feast registry."""
    settings = _settings(home)

    def body() -> None:
        with step("feast apply"):
            pipelines.apply_features(settings)

    _run(body)


@features_app.command("materialize")
def features_materialize(
    full: Annotated[bool, typer.Option("--full", help="Rewrite every customer, not only the changed ones.")] = False,
    home: HomeOption = None,
) -> None:
    """Load the latest feature values into the online store (incremental: only what changed since last run)."""
    settings = _settings(home)

    def body() -> None:
        with step(f"Materializing into the {settings.online_store} online store"), quiet_stdout():
            rows = pipelines.materialize(settings, full=full)
        console.print(f"  {rows:,} customers online")

    _run(body)


@app.command()
def train(
    data: DataOption = DEMO_DATA,
    as_of: AsOfOption = None,
    task: Annotated[list[str] | None, typer.Option(help="Task(s) to train (default: all).")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Cap rows per task (deterministic sample).")] = None,
    purchase_horizon_days: Annotated[int | None, typer.Option(min=1)] = None,
    churn_horizon_days: Annotated[int | None, typer.Option(min=1)] = None,
    home: HomeOption = None,
) -> None:
    """Build point-in-time training sets, train LightGBM models, track them in MLflow and register them."""
    settings = _settings(home, purchase_horizon_days=purchase_horizon_days, churn_horizon_days=churn_horizon_days)

    def body() -> None:
        _train(settings, _resolve(settings, data), _utc(as_of), tuple(task or ()), max_rows)

    _run(body)


def _train(
    settings: Settings, data_dir: Path, as_of: pd.Timestamp | None, tasks: tuple[str, ...], max_rows: int | None
) -> None:
    catalog = pipelines.catalog_for(settings)
    dataset = pipelines.load_usable(data_dir, settings, catalog, as_of)
    with step("Building feature snapshots"):
        pipelines.build_features(dataset, settings, as_of)
    with step("feast apply"):
        pipelines.apply_features(settings)
    with step("Training models (point-in-time sets → LightGBM → MLflow)"):
        results = pipelines.train(dataset, settings, catalog, tasks or TASKS, max_rows, data_dir)
    _print_training(results)


def _print_training(results: dict[str, Any]) -> None:
    """One row per task: its status, registered version and primary test metric beside the logistic baseline."""
    table = Table("task", "status", "version", "test metric", "model", "logistic baseline", "note")
    for task, result in results.items():
        metric = "macro_f1" if task == "phase" else "roc_auc"
        metrics = getattr(result, "metrics", {}) or {}
        version = getattr(result, "version", None)
        table.add_row(
            task,
            str(getattr(result, "status", "")),
            str(version.version) if version is not None else "",
            metric if metrics else "",
            _fmt(metrics.get(f"model_{metric}")),
            _fmt(metrics.get(f"baseline_logistic_{metric}")),
            str(getattr(result, "message", ""))[:80],
        )
    console.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    home: HomeOption = None,
) -> None:
    """Serve next-best-action decisions over HTTP (OpenAPI docs at /docs)."""
    settings = _settings(home)
    _serve(settings, host, port, workers)


def _serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run the API; without API keys it refuses any bind but loopback (a clean error, exit 2)."""
    from serving.app import serve
    from serving.security import check_bind

    _run(lambda: check_bind(host, settings))
    console.print(f"Serving on http://{host}:{port} (docs: http://{host}:{port}/docs) — Ctrl+C to stop")
    serve(settings, host, port, workers)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=100)] = 20_000,
    days: Annotated[int, typer.Option(min=30)] = 180,
    seed: Annotated[int, typer.Option()] = 42,
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after training.")] = False,
    max_rows: Annotated[
        int | None, typer.Option(help="Cap training rows per task (deterministic sample) to keep the demo quick.")
    ] = 300_000,
    home: HomeOption = None,
) -> None:
    """The whole journey on embedded defaults: simulate → validate → features → train → serve."""
    settings = _settings(home)

    def body() -> None:
        catalog = pipelines.catalog_for(settings)
        data_dir = settings.root / DEMO_DATA
        with step(f"Simulating {customers:,} customers × {days} days (seed {seed})"):
            counts = pipelines.simulate(data_dir, customers, days, seed, None, catalog)
        console.print("  " + ", ".join(f"{v:,} {k}" for k, v in counts.items()) + f" → {data_dir}")
        with step("Validating against the data contract"):
            dataset = pipelines.load_usable(data_dir, settings, catalog)
        quarantined = sum(r.rows_quarantined for r in dataset.reports)
        console.print(f"  {quarantined:,} rows quarantined")
        with step("Building feature snapshots"):
            build = pipelines.build_features(dataset, settings)
        console.print(f"  {build.rows:,} rows in {build.snapshots} snapshots")
        with step("feast apply"):
            pipelines.apply_features(settings)
        with step(f"Materializing into the {settings.online_store} online store"), quiet_stdout():
            pipelines.materialize(settings)
        with step("Training models (point-in-time sets → LightGBM → MLflow)"):
            results = pipelines.train(dataset, settings, catalog, TASKS, max_rows, data_dir)
        _print_training(results)
        example = str(dataset.customers["customer_id"].iloc[0])
        if no_serve:
            return
        # Plain stdout, one line: rich would wrap the command and break copy-paste.
        typer.echo(
            "\nTry it:\n"
            f"  curl -s -X POST http://{host}:{port}/v1/next-best-action "
            f"-H 'Content-Type: application/json' -d '{{\"customer_id\": \"{example}\"}}'\n"
        )
        _serve(settings, host, port, 1)

    _run(body)


def run() -> None:  # pragma: no cover - console entry point alias
    app(sys.argv[1:])


def _register_command_groups() -> None:
    from parcours.commands import evaluate, lifecycle, score

    for group in (lifecycle, evaluate, score):
        group.register(app)


_register_command_groups()
