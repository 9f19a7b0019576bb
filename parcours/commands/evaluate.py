"""Policy evaluation: simulator policies against ground truth, and off-policy estimates on logged decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise typer.BadParameter(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise typer.BadParameter("--seeds: at least one seed")
    return seeds


def _write(out: Path, payload: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str, allow_nan=True))


def _print_simulation(result: dict[str, Any]) -> None:
    from rich.table import Table

    from parcours.console import console
    from training.policy_eval import POLICIES

    table = Table("policy", "incr. revenue", "± sd", "conversions", "contacts", "opt-outs", "churned", "true net value")
    for name in POLICIES:
        if name not in result:
            continue
        r = result[name]
        table.add_row(
            name,
            f"{r['incremental_revenue']:,.0f}",
            f"{r['incremental_revenue_std']:,.0f}",
            f"{r['conversions']:,.0f}",
            f"{r['contacts']:,.0f}",
            f"{r['opt_outs']:,.1f}",
            f"{r['churned']:,.1f}",
            f"{r['expected_net_value']:,.0f}",
        )
    console.print(table)
    verdict = result.get("verdict") or {}
    if verdict:
        ratio = verdict.get("revenue_ratio")
        console.print(
            f"  best baseline: {verdict['best_baseline']}; NBA / baseline incremental revenue: "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'}; target met: {verdict['target_met']}"
        )
    if verdict.get("per_seed_ratio"):
        ratios = ", ".join("n/a" if r is None else f"{r:.2f}" for r in verdict["per_seed_ratio"])
        ci = verdict.get("target_margin_ci95")
        interval = "" if ci is None else f" (95% CI {ci[0]:,.0f} to {ci[1]:,.0f})"
        console.print(
            f"  per seed: {ratios}; {verdict['seeds_meeting_target']} of {verdict['seeds']} seeds meet every clause; "
            f"NBA − 1.3 × baseline: {verdict['target_margin']:,.0f}{interval}; "
            f"met with confidence: {verdict['target_met_with_confidence']}"
        )
    phase = result.get("phase_model")
    if phase:
        console.print(
            f"  phase model against the simulator's latent phase: {phase['accuracy']:.0%} right "
            f"(± {phase['accuracy_std']:.0%} over seeds; customers in a journey phase when the policies start)"
        )


def _print_offline(result: dict[str, Any]) -> None:
    from rich.table import Table

    from parcours.console import console

    table = Table("policy", "estimator", "revenue / decision", "95% CI", "ESS")
    for name in ("nba", "rules", "none"):
        for estimator, est in result.get(name, {}).get("revenue_per_decision", {}).items():
            ess = est.get("effective_sample_size")
            table.add_row(
                name,
                estimator,
                f"{est['value']:.2f}",
                f"[{est['ci_low']:.2f}, {est['ci_high']:.2f}]",
                "" if ess is None else f"{ess:,.0f}",
            )
    console.print(table)
    console.print(f"  logging policy (on-policy): {result['logging_policy']['revenue']:.2f} per decision")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `parcours` app."""

    @app.command()
    def evaluate(
        out: Annotated[Path, typer.Option(help="JSON file for the results.")],
        customers: Annotated[int, typer.Option(min=100, help="Simulated customers.")] = 5_000,
        days: Annotated[int, typer.Option(min=45, help="Warm-up days under the randomized logging policy.")] = 120,
        horizon_days: Annotated[int, typer.Option(min=7, help="Evaluation days per policy.")] = 28,
        seeds: Annotated[str, typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = "0,1,2",
        max_rows: Annotated[int | None, typer.Option(help="Cap training rows per task.")] = None,
        offline: Annotated[
            bool, typer.Option("--offline", help="Off-policy estimates on logged decisions (needs --data).")
        ] = False,
        data: Annotated[
            Path | None, typer.Option(help="Logged data directory (contract tables) for --offline.")
        ] = None,
        train_share: Annotated[float, typer.Option(help="--offline: share of the time span trained on.")] = 0.7,
        epsilon: Annotated[float, typer.Option(help="--offline: exploration of the target NBA policy.")] = 0.1,
        mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow.")] = True,
        home: Annotated[Path | None, typer.Option("--home", envvar="PARCOURS_HOME", help="Workspace.")] = None,
    ) -> None:
        """Does parcours beat rules and constant policies? On the simulator's ground truth (default: every policy
        run forward from the same warm-up state), or off-policy on logged decisions (--offline)."""
        from parcours.cli import _resolve, _run, _settings
        from parcours.console import console, step

        settings = _settings(home)

        def body() -> None:
            from parcours import pipelines

            catalog = pipelines.catalog_for(settings)
            from journey.policies import load_policies

            policies = load_policies(settings.policies_path)
            target = _resolve(settings, out)
            if offline:
                if data is None:
                    raise typer.BadParameter("--offline needs --data DIR (the logged decisions)")
                from training.offline_eval import evaluate_offline

                dataset = pipelines.load_usable(_resolve(settings, data), settings, catalog)
                with step("Off-policy evaluation (IPS, SNIPS, DR) on the logged decisions"):
                    result = evaluate_offline(
                        dataset, catalog, policies, train_share=train_share, epsilon=epsilon,
                        window_days=settings.response_window_days, seed=settings.seed, max_rows=max_rows,
                        progress=lambda m: console.print(f"  {m}"),
                    )  # fmt: skip
                _write(target, result)
                _print_offline(result)
            else:
                from training.policy_eval import SimEvalConfig, evaluate_on_simulator, log_result

                config = SimEvalConfig(
                    customers=customers, days=days, horizon_days=horizon_days, seeds=_seeds(seeds), max_rows=max_rows
                )
                with step(f"Evaluating policies on the simulator ({len(config.seeds)} seeds)"):
                    result = evaluate_on_simulator(
                        config, catalog, policies, progress=lambda m: console.print(f"  {m}")
                    )
                if mlflow:
                    result["mlflow_run_id"] = log_result(result, settings)
                _write(target, result)
                _print_simulation(result)
            console.print(f"  → {target}")

        _run(body)
