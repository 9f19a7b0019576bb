"""Batch scoring: decide for the whole base (always-on outbound).

`parcours score --out FILE.parquet` scores the workspace's current features (the offline store's latest snapshot);
`parcours score --data DIR --as-of DATE --out FILE.parquet` brings its own data: validated, features built as of
DATE, scored with the champion models. Either way: the same engine and contact policies as the API, channel
capacities shared by the whole base, one row per customer.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd

    from journey.settings import Settings
    from serving.batch import BatchPlan

OutOption = Annotated[Path, typer.Option("--out", help="Parquet file to write, one row per customer.")]


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `parcours` app."""
    app.command(name="score")(score)


def score(
    out: OutOption,
    data: Annotated[
        Path | None, typer.Option("--data", help="Directory with customers, events[, contacts]; needs --as-of.")
    ] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="With --data: features from events strictly before (UTC).")
    ] = None,
    send_hour: Annotated[
        int,
        typer.Option("--send-hour", min=0, max=23, help="UTC hour the contacts go out (request time, quiet hours)."),
    ] = 10,
    purchase_horizon_days: Annotated[int | None, typer.Option(min=1)] = None,
    churn_horizon_days: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=100, help="Customers per scoring batch.")] = 20_000,
    top_k: Annotated[int, typer.Option(min=0, max=10, help="Also write the next K best actions.")] = 0,
    home: Annotated[Path | None, typer.Option("--home", envvar="PARCOURS_HOME", help="Workspace.")] = None,
) -> None:
    """Decide the next best action for every customer and write them to a Parquet file."""
    from parcours.cli import _resolve, _run, _settings, _utc

    settings = _settings(home, purchase_horizon_days=purchase_horizon_days, churn_horizon_days=churn_horizon_days)

    def body() -> None:
        from journey.errors import ConfigError

        if (data is None) != (as_of is None):
            raise ConfigError("--data and --as-of go together: give both (your own data) or neither (workspace)")
        target = _resolve(settings, out)
        when = _utc(as_of)
        if data is not None and when is not None:
            frame = _score_data(settings, _resolve(settings, data), when, send_hour, batch_size, top_k)
        else:
            frame = _score_workspace(settings, send_hour, batch_size, top_k)
        _write(frame, target)
        _summary(frame, target)

    _run(body)


def _plan(settings: Settings, batch_size: int) -> BatchPlan:
    from parcours.console import step
    from serving.batch import plan_for

    with step("Loading champion models"):
        plan = plan_for(settings, batch_size=batch_size)
    _check_horizons(settings, plan)
    return plan


def _score_workspace(settings: Settings, send_hour: int, batch_size: int, top_k: int) -> pd.DataFrame:
    import pandas as pd

    from parcours.console import console, step
    from serving.batch import latest_snapshot

    with step("Reading the latest feature snapshot"):
        features, snapshot_ts = latest_snapshot(settings)
    console.print(f"  {len(features):,} customers as of {snapshot_ts:%Y-%m-%d %H:%M} UTC")
    plan = _plan(settings, batch_size)
    return _decide(settings, plan, features, snapshot_ts.floor("D") + pd.Timedelta(hours=send_hour), top_k)


def _score_data(
    settings: Settings, data_dir: Path, as_of: pd.Timestamp, send_hour: int, batch_size: int, top_k: int
) -> pd.DataFrame:
    import pandas as pd

    from parcours import pipelines
    from parcours.console import console, step
    from serving.batch import features_as_of

    catalog = pipelines.catalog_for(settings)
    with step(f"Validating {data_dir}"):
        dataset = pipelines.load_usable(data_dir, settings, catalog, as_of)
    with step(f"Building features as of {as_of:%Y-%m-%d %H:%M} UTC"):
        parts = list(features_as_of(dataset.customers, dataset.events, dataset.contacts, as_of))
        features = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"customer_id": []})
    console.print(f"  {len(features):,} customers with history before {as_of:%Y-%m-%d}")
    plan = _plan(settings, batch_size)
    return _decide(settings, plan, features, as_of.floor("D") + pd.Timedelta(hours=send_hour), top_k)


def _decide(settings: Settings, plan: BatchPlan, features: pd.DataFrame, now: pd.Timestamp, top_k: int) -> pd.DataFrame:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from parcours.console import console
    from serving.batch import score_base

    columns = (TextColumn("[bold]Deciding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("customers", total=len(features))
        frame = score_base(
            settings, features, now, lambda done, total: bar.update(task, completed=done), plan=plan, top_k=top_k
        )
    frame.insert(1, "decided_at", now)
    return frame


def _write(frame: pd.DataFrame, target: Path) -> None:
    import os

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, target)  # readers never see a half-written file


def _summary(frame: pd.DataFrame, target: Path) -> None:
    from rich.table import Table

    from parcours.console import console

    console.print(f"[green]✓[/green] {len(frame):,} decisions → {target}")
    if frame.empty:
        return
    counts = frame.groupby("channel").agg(customers=("customer_id", "size"), value=("score", "sum"))
    table = Table("channel", "customers", "share", "expected value")
    for channel, customers, value in counts.sort_values("customers", ascending=False).itertuples():
        table.add_row(str(channel), f"{customers:,}", f"{customers / len(frame):.1%}", f"{value:,.1f}")
    console.print(table)


def _check_horizons(settings: Settings, plan: BatchPlan) -> None:
    """Warn when a champion was trained for another horizon than the one asked: its score means that one."""
    from parcours.console import console

    models = plan.engine.models
    for task, asked in (("purchase", settings.purchase_horizon_days), ("churn", settings.churn_horizon_days)):
        model = getattr(models, task)
        trained = _trained_horizon(settings, model.metadata.get("mlflow_run_id")) if model is not None else None
        if trained is not None and trained != asked:
            console.print(
                f"[yellow]warning:[/yellow] the {task} champion predicts within {trained} days, not {asked}: "
                f"its score keeps its own horizon (retrain with --{task}-horizon-days {asked})"
            )


def _trained_horizon(settings: Settings, run_id: object) -> int | None:
    if not run_id:
        return None
    import mlflow

    try:
        mlflow.set_tracking_uri(settings.tracking_uri)
        value = mlflow.MlflowClient().get_run(str(run_id)).data.params.get("horizon_days")
        return int(value) if value not in (None, "None") else None
    except Exception:  # the tracking store is not essential to scoring
        return None
