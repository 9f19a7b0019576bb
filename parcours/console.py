"""Console output shared by the CLI: rich steps with timings, and quiet third-party loggers."""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout

from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True)

NOISY_LOGGERS = ("feast", "mlflow", "alembic", "urllib3", "httpx", "ibis", "matplotlib", "numexpr", "dask")


def setup_logging(verbose: bool = False) -> None:
    """Readable logs on stderr; third-party chatter only with --verbose."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not verbose:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="feast")


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Swallow what libraries print (Feast's materialize banner) so the CLI's own progress stays readable."""
    with redirect_stdout(io.StringIO()):
        yield


@contextmanager
def step(title: str) -> Iterator[None]:
    """A spinner while the step runs, then a check mark with its wall time."""
    started = time.perf_counter()
    with console.status(f"[bold]{title}…"):
        yield
    console.print(f"[green]✓[/green] {title} [dim]({time.perf_counter() - started:.1f} s)[/dim]")
