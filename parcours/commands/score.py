"""Batch scoring: decide for the whole base (always-on outbound)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the `parcours` app."""
    del app  # no commands yet
