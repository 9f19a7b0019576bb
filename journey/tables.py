"""Read and write the data-contract tables (`customers`, `events`, `contacts`) in one directory.

A table is `<name>.parquet`, `<name>.csv` or `<name>.csv.gz`. CSV columns the contract owns are read as text so
identifiers keep their leading zeros and a bad cell reaches the contract with the spelling the user wrote;
`journey.contract` then parses and checks them. Extra columns keep pandas' inferred types.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from journey.errors import DataContractError
from journey.vocabulary import CONSENT_FIELDS

TABLE_NAMES: tuple[str, ...] = ("customers", "events", "contacts")

# Searched in this order: the first one that exists is the table.
TABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".csv.gz")

# Every column the contract parses itself (see journey.contract.schema); read from CSV as text.
TEXT_COLUMNS: frozenset[str] = frozenset(
    {
        "customer_id",
        "signup_ts",
        *CONSENT_FIELDS,
        "ts",
        "event_type",
        "channel",
        "content",
        "value",
        "decision_id",
        "propensity",
        "policy",
    }
)


def table_candidates(directory: Path, name: str) -> list[Path]:
    """All files that could hold table `name`, in precedence order (more than one is ambiguous)."""
    return [path for suffix in TABLE_SUFFIXES if (path := Path(directory) / f"{name}{suffix}").exists()]


def find_table(directory: Path, name: str) -> Path | None:
    """The file holding table `name` (parquet wins over csv, csv over csv.gz), or None."""
    candidates = table_candidates(directory, name)
    return candidates[0] if candidates else None


def read_table(directory: Path, name: str) -> pd.DataFrame:
    """Read table `name` from `directory`; a missing or unreadable file is a DataContractError naming it."""
    path = find_table(directory, name)
    if path is None:
        expected = ", ".join(f"{name}{suffix}" for suffix in TABLE_SUFFIXES)
        raise DataContractError(f"{directory}: no {name} table (expected one of {expected})")
    return read_table_file(path)


def read_table_file(path: Path) -> pd.DataFrame:
    """Read one parquet or CSV file; any parse failure becomes a DataContractError that names the file."""
    path = Path(path)
    try:
        if path.name.endswith(".parquet"):
            return pd.read_parquet(path)
        return _read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataContractError(f"{path}: cannot read the file: {exc}") from exc
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        raise DataContractError(f"{path}: cannot read the file: {type(exc).__name__}: {exc}") from exc


def _read_csv(path: Path) -> pd.DataFrame:
    """Contract columns as text (matched like the contract does: stripped, case-insensitive)."""
    header = pd.read_csv(path, nrows=0)
    text = {column: str for column in header.columns if str(column).strip().lower() in TEXT_COLUMNS}
    return pd.read_csv(path, dtype=text, low_memory=False)


def write_table(frame: pd.DataFrame, directory: Path, name: str) -> Path:
    """Write `frame` as `<directory>/<name>.parquet` (creating the directory); returns the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return path
