"""Model lifecycle: compare, promote, retrain, schedule, ui (issue: model lifecycle)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `parcours` app."""
    del app  # no commands yet
