"""One small simulated workspace, built once per test module through the real CLI."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from journey.settings import Settings
from parcours.cli import app

SMALL = ["--customers", "2000", "--days", "120", "--seed", "7"]


@dataclass(frozen=True)
class Workspace:
    home: Path
    settings: Settings
    customers: pd.DataFrame


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    home = tmp_path_factory.mktemp("parcours-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PARCOURS_HOME", str(home))
        result = CliRunner().invoke(app, ["demo", "--no-serve", *SMALL, "--home", str(home)])
        assert result.exit_code == 0, result.output + repr(result.exception)
        customers = pd.read_parquet(home / "data" / "demo" / "customers.parquet")
        yield Workspace(home=home, settings=Settings(home=home), customers=customers)
