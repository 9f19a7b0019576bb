"""Validate the three tables, split every input row into "valid" or "quarantined with one reason", and say
whether the data as a whole can be used. The rules themselves live in `journey.contract.rules`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from journey.catalog import Catalog, load_catalog
from journey.contract import rules
from journey.contract.schema import (
    MAX_QUARANTINE_SHARE,
    OPTIONAL_COLUMNS,
    QUARANTINE_COLUMNS,
    REQUIRED_COLUMNS,
    contract_columns,
    empty_frame,
)
from journey.tables import TABLE_NAMES, TABLE_SUFFIXES, find_table, read_table_file, table_candidates

REPORT_FILE = "report.json"


@dataclass
class TableReport:
    """Row accounting of one table: rows_in == rows_valid + rows_quarantined, reasons counted per rule."""

    table: str
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_valid": self.rows_valid,
            "rows_quarantined": self.rows_quarantined,
            "reasons": dict(sorted(self.reasons.items(), key=lambda item: -item[1])),
        }


@dataclass
class ValidatedData:
    """The normalised tables (valid rows only), the quarantined rows, and why the data is (un)usable."""

    customers: pd.DataFrame
    events: pd.DataFrame
    contacts: pd.DataFrame
    quarantine: pd.DataFrame
    reports: list[TableReport]
    problems: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """False as soon as one problem is found: later steps must not run on this data."""
        return not self.problems

    def report(self, table: str) -> TableReport:
        return next(report for report in self.reports if report.table == table)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable overview, written to quarantine/report.json and printed by the CLI."""
        return {
            "usable": self.usable,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "tables": {report.table: report.as_dict() for report in self.reports},
            "rows_quarantined": int(sum(report.rows_quarantined for report in self.reports)),
        }


def empty_contacts() -> pd.DataFrame:
    """A zero-row contacts frame with the normalised dtypes, for a bare transaction log."""
    return empty_frame("contacts")


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "table": pd.Series([], dtype=object),
            "row": pd.Series([], dtype="int64"),
            "reason": pd.Series([], dtype=object),
            "record": pd.Series([], dtype=object),
        }
    )


def validate(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    contacts: pd.DataFrame | None,
    catalog: Catalog | None = None,
    now: pd.Timestamp | None = None,
) -> ValidatedData:
    """Check the tables against the contract; `contacts=None` is a bare transaction log (no contacts)."""
    return _validate({"customers": customers, "events": events, "contacts": contacts}, catalog, now)


def validate_dir(
    directory: Path,
    catalog: Catalog | None = None,
    quarantine_dir: Path | None = None,
    now: pd.Timestamp | None = None,
) -> ValidatedData:
    """Read and validate the tables of `directory`; with `quarantine_dir`, write the quarantine and report."""
    directory = Path(directory)
    frames: dict[str, pd.DataFrame | None] = {}
    notes: list[str] = []
    for name in TABLE_NAMES:
        candidates = table_candidates(directory, name)
        if len(candidates) > 1:
            notes.append(
                f"{name}: several files found ({', '.join(p.name for p in candidates)}); using {candidates[0].name}"
            )
        path = find_table(directory, name)
        frames[name] = None if path is None else read_table_file(path)
    missing = [name for name in ("customers", "events") if frames[name] is None]
    expected = ", ".join(f"<table>{suffix}" for suffix in TABLE_SUFFIXES)
    problems = [f"{name}: table is missing from {directory} (expected {expected})" for name in missing]
    data = _validate(frames, catalog, now, problems=problems)
    data.warnings[:0] = notes
    if quarantine_dir is not None:
        write_quarantine(data, Path(quarantine_dir), source=directory)
    return data


def write_quarantine(data: ValidatedData, quarantine_dir: Path, source: Path | None = None) -> None:
    """`<table>.parquet` for each table with quarantined rows (stale ones removed) and `report.json`."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for name in TABLE_NAMES:
        path = quarantine_dir / f"{name}.parquet"
        rows = data.quarantine[data.quarantine["table"] == name]
        if rows.empty:
            path.unlink(missing_ok=True)  # a file left by an earlier run would blame fixed data
            continue
        rows.reset_index(drop=True).to_parquet(path, index=False)
        files[name] = path.name
    report = {**data.summary(), "source": None if source is None else str(source), "quarantine_files": files}
    (quarantine_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")


def _validate(
    frames: dict[str, pd.DataFrame | None],
    catalog: Catalog | None,
    now: pd.Timestamp | None,
    problems: list[str] | None = None,
) -> ValidatedData:
    now = _utc_now(now)
    problems = list(problems or [])
    warnings: list[str] = []
    raw = {name: _prepare(name, frame, problems, warnings) for name, frame in frames.items()}
    checked: dict[str, rules.Checked] = {}
    valid_ids = all_ids = None
    if raw["customers"] is not None:
        checked["customers"] = rules.check_customers(raw["customers"], now)
        valid_ids = pd.Index(checked["customers"].frame["customer_id"].unique())
        all_ids = pd.Index(rules.parse.parse_id(raw["customers"]["customer_id"]).values.dropna().unique())
    if raw["events"] is not None:
        checked["events"] = rules.check_events(raw["events"], now, valid_ids, all_ids)
    if raw["contacts"] is not None:
        catalog = catalog or load_catalog()
        checked["contacts"] = rules.check_contacts(raw["contacts"], now, catalog, valid_ids, all_ids)
    if frames["contacts"] is None:
        warnings.append(
            "contacts: no contacts table (bare transaction log); using an empty one, so models that "
            "learn from past contacts (response/uplift) cannot be trained yet"
        )
    reports = [_report(name, frames[name], raw[name], checked.get(name)) for name in TABLE_NAMES]
    problems += _usability_problems(reports, checked)
    warnings += _data_warnings(checked)
    return ValidatedData(
        customers=_frame_or_empty(checked, "customers"),
        events=_frame_or_empty(checked, "events"),
        contacts=_frame_or_empty(checked, "contacts"),
        quarantine=_quarantine(raw, checked),
        reports=reports,
        problems=problems,
        warnings=warnings,
    )


def _utc_now(now: pd.Timestamp | None) -> pd.Timestamp:
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _prepare(name: str, frame: pd.DataFrame | None, problems: list[str], warnings: list[str]) -> pd.DataFrame | None:
    """Match column names leniently, then reject the table (None) if a required column is absent."""
    if frame is None:
        return None
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        frame = frame.reset_index(drop=True)  # row numbers in the quarantine are positions in the input
    frame = _rename_contract_columns(name, frame)
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        problems.append(f"{name}: duplicate column names: {', '.join(duplicated)}")
        return None
    absent = [column for column in REQUIRED_COLUMNS[name] if column not in frame.columns]
    if absent:
        found = ", ".join(map(str, frame.columns)) or "none"
        problems += [f"{name}: required column '{column}' is missing (columns found: {found})" for column in absent]
        return None
    defaults: dict[str, list[str]] = {}
    for column, default in OPTIONAL_COLUMNS[name].items():
        if column not in frame.columns and not (name == "events" and column == "content"):
            defaults.setdefault(repr(default), []).append(f"'{column}'")
    warnings += [f"{name}: no {', '.join(cols)} column(s); every row gets {value}" for value, cols in defaults.items()]
    if name != "customers":
        extra = [str(c) for c in frame.columns if c not in contract_columns(name)]
        if extra:
            warnings.append(f"{name}: extra column(s) not kept: {', '.join(extra)}")
    return frame


def _rename_contract_columns(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """' Customer_ID ' is customer_id: headers are matched stripped and case-insensitively."""
    known = set(contract_columns(name))
    renames = {
        column: str(column).strip().lower()
        for column in frame.columns
        if column not in known
        and str(column).strip().lower() in known
        and str(column).strip().lower() not in frame.columns
    }
    return frame.rename(columns=renames) if renames else frame


def _report(
    name: str, given: pd.DataFrame | None, raw: pd.DataFrame | None, checked: rules.Checked | None
) -> TableReport:
    rows_in = 0 if given is None else len(given)
    if checked is None:  # absent (0 rows) or rejected as a whole: every row counts as quarantined
        reasons = {"table rejected (see problems)": rows_in} if rows_in else {}
        return TableReport(name, rows_in, 0, rows_in, reasons)
    valid = int(checked.verdicts.valid.sum())
    return TableReport(name, rows_in, valid, rows_in - valid, dict(checked.verdicts.counts))


def _usability_problems(reports: list[TableReport], checked: dict[str, rules.Checked]) -> list[str]:
    problems = []
    if "customers" in checked and checked["customers"].frame.empty:
        problems.append("customers: no valid customers")
    for report in reports:
        if report.table not in checked or report.rows_in == 0:
            continue
        share = report.rows_quarantined / report.rows_in
        if share > MAX_QUARANTINE_SHARE:
            problems.append(
                f"{report.table}: {share:.0%} of rows quarantined ({report.rows_quarantined} of "
                f"{report.rows_in}; the limit is {MAX_QUARANTINE_SHARE:.0%}); see the quarantine for the reasons"
            )
    return problems


def _data_warnings(checked: dict[str, rules.Checked]) -> list[str]:
    warnings = []
    if "events" in checked and checked["events"].frame.empty:
        warnings.append("events: no valid events; features will be empty")
    if "contacts" in checked:
        legacy = int(checked["contacts"].frame["propensity"].isna().sum())
        if legacy:
            warnings.append(
                f"contacts: {legacy} row(s) without propensity (legacy logs); off-policy evaluation skips them"
            )
    return warnings


def _frame_or_empty(checked: dict[str, rules.Checked], name: str) -> pd.DataFrame:
    return checked[name].frame if name in checked else empty_frame(name)


def _quarantine(raw: dict[str, pd.DataFrame | None], checked: dict[str, rules.Checked]) -> pd.DataFrame:
    parts = []
    for name, result in checked.items():
        bad = ~result.verdicts.valid
        if not bad.any():
            continue
        frame = raw[name]
        assert frame is not None  # a checked table was prepared
        positions = np.flatnonzero(bad)
        parts.append(
            pd.DataFrame(
                {
                    "table": name,
                    "row": positions.astype("int64"),
                    "reason": result.verdicts.reason[bad],
                    "record": _records_json(frame.iloc[positions]),
                }
            )
        )
    if not parts:
        return empty_quarantine()
    return pd.concat(parts, ignore_index=True)[list(QUARANTINE_COLUMNS)]


def _records_json(rows: pd.DataFrame) -> list[str]:
    """One JSON object per row, as the user gave it (JSON escapes newlines, so lines split safely)."""
    text = rows.to_json(orient="records", lines=True, date_format="iso", default_handler=str, force_ascii=False)
    return text.rstrip("\n").split("\n") if len(rows) else []
