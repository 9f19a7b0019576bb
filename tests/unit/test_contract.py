"""The data contract: every bad row is quarantined with one reason, nothing is lost, dtypes are normalised."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey.contract import (
    NORMALISED_COLUMNS,
    QUARANTINE_COLUMNS,
    ValidatedData,
    empty_contacts,
    validate,
    validate_dir,
)
from journey.tables import write_table
from journey.vocabulary import CONSENT_FIELDS

NOW = pd.Timestamp("2026-03-01", tz="UTC")


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype=object)


def _row(frame: pd.DataFrame, position: int, **overrides: object) -> dict[str, object]:
    return {**{str(k): v for k, v in frame.iloc[position].to_dict().items()}, **overrides}


def customers() -> pd.DataFrame:
    """Three valid customers, spelled as a CSV export would (all text)."""
    consents = dict.fromkeys(CONSENT_FIELDS, "yes")
    return _frame(
        [
            {"customer_id": "c1", "signup_ts": "2025-01-01", **consents, "tier": "gold"},
            {"customer_id": "c2", "signup_ts": None, **consents, "tier": "silver"},
            {"customer_id": "c3", "signup_ts": "2025-02-01 09:30:00", **consents, "tier": None},
        ]
    )


def events() -> pd.DataFrame:
    return _frame(
        [
            {"customer_id": "c1", "ts": "2025-06-01", "event_type": "purchase", "channel": "web",
             "content": None, "value": "20"},
            {"customer_id": "c2", "ts": "2025-06-02", "event_type": "page_view", "channel": "web",
             "content": "home", "value": None},
            {"customer_id": "c1", "ts": "2025-06-03", "event_type": "survey", "channel": "email",
             "content": None, "value": "8"},
        ]
    )  # fmt: skip


def contacts() -> pd.DataFrame:
    return _frame(
        [
            {"decision_id": "d1", "customer_id": "c1", "ts": "2025-05-30", "channel": "email",
             "content": "cart_reminder", "propensity": "0.5", "policy": "nba"},
            {"decision_id": "d2", "customer_id": "c2", "ts": "2025-05-30", "channel": "none",
             "content": "none", "propensity": "0.9", "policy": "nba"},
        ]
    )  # fmt: skip


def _tables() -> dict[str, pd.DataFrame]:
    return {"customers": customers(), "events": events(), "contacts": contacts()}


def _run(tables: dict[str, pd.DataFrame]) -> ValidatedData:
    return validate(tables["customers"], tables["events"], tables["contacts"], now=NOW)


def test_clean_tables_are_usable_and_nothing_is_quarantined() -> None:
    data = _run(_tables())
    assert data.usable, data.problems
    assert data.quarantine.empty
    assert [len(data.customers), len(data.events), len(data.contacts)] == [3, 3, 2]


# (table, cell overrides on a copy of that table's first row, expected reason substring)
BAD_ROWS = [
    ("customers", {"customer_id": ""}, "customer_id: missing"),
    ("customers", {"customer_id": None}, "customer_id: missing"),
    ("customers", {"customer_id": "c9", "signup_ts": "2026-13-01"}, "signup_ts: not a timestamp ('2026-13-01')"),
    ("customers", {"customer_id": "c9", "signup_ts": "1985-04-01"}, "signup_ts: '1985-04-01' is before 1990-01-01"),
    ("customers", {"customer_id": "c9", "signup_ts": "2030-01-01"}, "signup_ts: '2030-01-01' is in the future"),
    ("customers", {"customer_id": "c9", "consent_sms": "maybe"}, "consent_sms: not a yes/no value ('maybe')"),
    ("customers", {"signup_ts": "2025-03-01"}, "customer_id: duplicate of row 0"),
    ("events", {"event_type": "purchace"}, "event_type: 'purchace' is not in the event vocabulary"),
    ("events", {"event_type": None}, "event_type: missing"),
    ("events", {"ts": "2026-13-01"}, "ts: not a timestamp ('2026-13-01')"),
    ("events", {"ts": "01/06/2025"}, "ts: not a timestamp ('01/06/2025')"),
    ("events", {"ts": "  "}, "ts: missing"),
    ("events", {"ts": "1900-01-01"}, "ts: '1900-01-01' is before 1990-01-01"),
    ("events", {"ts": "2026-03-03"}, "ts: '2026-03-03' is in the future"),
    ("events", {"channel": "fax"}, "channel: 'fax' is not in the event channels"),
    ("events", {"customer_id": " "}, "customer_id: missing"),
    ("events", {"customer_id": "c9"}, "customer_id: unknown customer (not in customers)"),
    ("events", {"value": "-5"}, "value: purchase amount must be >= 0"),
    ("events", {"value": "12,50"}, "value: not a number ('12,50')"),
    ("events", {"value": "inf"}, "value: not a number ('inf')"),
    ("events", {"event_type": "survey", "value": "11"}, "value: survey score must be between 0 and 10"),
    ("events", {"event_type": "review", "value": "0"}, "value: review rating must be between 1 and 5"),
    ("events", {"event_type": "review", "value": "9"}, "value: review rating must be between 1 and 5 (got 9)"),
    ("events", {}, "duplicate of row 0"),
    ("contacts", {"decision_id": "d9", "propensity": "1.7"}, "propensity: 1.7 is outside (0, 1]"),
    ("contacts", {"decision_id": "d9", "propensity": "0"}, "propensity: 0 is outside (0, 1]"),
    ("contacts", {"decision_id": "d9", "propensity": "high"}, "propensity: not a number ('high')"),
    ("contacts", {"decision_id": "d9", "channel": "fax"}, "channel: 'fax' is not in the catalog channels"),
    ("contacts", {"decision_id": "d9", "content": "spam"}, "content: 'spam' is not in the catalog contents"),
    ("contacts", {"decision_id": "d9", "channel": "none"}, "channel: 'none' must go with content 'none'"),
    ("contacts", {"decision_id": "d9", "content": "none"}, "content: 'none' must go with channel 'none'"),
    ("contacts", {"decision_id": "d9", "channel": "mail"}, "'cart_reminder' is not allowed on channel 'mail'"),
    ("contacts", {"decision_id": "d9", "customer_id": "c9"}, "customer_id: unknown customer"),
    ("contacts", {"decision_id": None}, "decision_id: missing"),
    ("contacts", {"decision_id": "d9", "channel": ""}, "channel: missing (write 'none' for no contact)"),
    ("contacts", {"ts": "2026-03-01T10:00:00"}, "decision_id: duplicate of row 0"),
]


@pytest.mark.parametrize(("table", "overrides", "expected"), BAD_ROWS)
def test_a_bad_row_is_quarantined_with_its_reason(table: str, overrides: dict[str, object], expected: str) -> None:
    tables = _tables()
    good = tables[table]
    bad_row = _row(good, 0, **overrides)
    tables[table] = pd.concat([good, _frame([bad_row])], ignore_index=True)

    data = _run(tables)

    assert len(data.quarantine) == 1, data.quarantine
    row = data.quarantine.iloc[0]
    assert (row["table"], row["row"]) == (table, len(good))
    assert expected in row["reason"]
    assert json.loads(row["record"]) == bad_row  # the row as the user gave it
    assert data.report(table).rows_valid == len(good)


def test_the_first_failing_rule_wins() -> None:
    tables = _tables()
    tables["events"].loc[0, ["ts", "event_type"]] = ["not a date", "purchace"]
    reason = _run(tables).quarantine["reason"].tolist()
    assert reason == ["ts: not a timestamp ('not a date')"]


def test_events_of_a_quarantined_customer_say_so() -> None:
    tables = _tables()
    tables["customers"].loc[1, "signup_ts"] = "garbage"  # c2 is quarantined, its page_view follows
    quarantine = _run(tables).quarantine.set_index("table")
    assert quarantine.loc["events", "reason"] == "customer_id: customer 'c2' was quarantined in customers"


def test_a_duplicate_customer_keeps_the_first_valid_row() -> None:
    tables = _tables()
    extra = _row(tables["customers"], 0, signup_ts="2025-05-05")
    tables["customers"].loc[0, "signup_ts"] = "bad"
    tables["customers"] = pd.concat([tables["customers"], _frame([extra])], ignore_index=True)
    data = _run(tables)
    kept = data.customers.set_index("customer_id").loc["c1", "signup_ts"]
    assert kept == pd.Timestamp("2025-05-05", tz="UTC")
    assert data.quarantine["reason"].tolist() == ["signup_ts: not a timestamp ('bad')"]


def _messy() -> dict[str, pd.DataFrame]:
    tables = _tables()
    tables["customers"] = pd.concat([tables["customers"], tables["customers"].iloc[[0]]], ignore_index=True)
    more_events = tables["events"].assign(
        event_type=["purchase", "purchace", "survey"], value=pd.Series(["-1", None, "3"], dtype=object)
    )
    tables["events"] = pd.concat([tables["events"], tables["events"], tables["events"], more_events])
    return tables


def test_rows_are_conserved() -> None:
    data = _run(_messy())
    assert data.quarantine.shape[0] > 0
    frames = {"customers": data.customers, "events": data.events, "contacts": data.contacts}
    for report in data.reports:
        assert report.rows_in == report.rows_valid + report.rows_quarantined
        assert report.rows_valid == len(frames[report.table])
        assert report.rows_quarantined == int((data.quarantine["table"] == report.table).sum())
        assert report.rows_quarantined == sum(report.reasons.values())
    assert data.report("events").rows_in == 12
    assert data.report("events").rows_quarantined == 8  # 6 repeats, one typo, one negative amount


def test_frames_are_normalised_to_the_architecture_dtypes() -> None:
    paris = pd.Timestamp("2025-06-01 12:00", tz="Europe/Paris")
    typed_customers = pd.DataFrame(
        {
            "customer_id": [7, 8],
            "signup_ts": pd.Series([pd.Timestamp("2025-01-01 10:00"), pd.NaT]),  # naive → taken as UTC
            "consent_email": ["Yes", "n"],
            "consent_sms": [True, False],
            "consent_push": [None, "TRUE"],
            "consent_mail": [1, 0],
            "age": [41, 35],
        }
    )
    typed_events = pd.DataFrame(
        {
            "customer_id": ["7", "8"],
            "ts": [paris, paris],
            "event_type": ["Purchase", "page_view"],
            "channel": ["STORE", "web"],
            "value": ["12.5", None],
        }
    )
    data = validate(typed_customers, typed_events, None, now=NOW)

    assert data.usable, data.problems
    c, e, k = data.customers, data.events, data.contacts
    assert list(c.columns) == [*NORMALISED_COLUMNS["customers"], "age"]
    assert c["customer_id"].tolist() == ["7", "8"]
    assert str(c["signup_ts"].dtype) == "datetime64[us, UTC]"
    assert c["signup_ts"].iloc[0] == pd.Timestamp("2025-01-01 10:00", tz="UTC") and pd.isna(c["signup_ts"].iloc[1])
    assert all(c[column].dtype == bool for column in CONSENT_FIELDS)
    assert c["consent_email"].tolist() == [True, False]
    assert c["consent_push"].tolist() == [False, True]
    assert c["consent_mail"].tolist() == [True, False]
    assert c["consent_call"].tolist() == [False, False]  # absent column: no consent
    assert c["age"].dtype == np.int64
    assert list(e.columns) == list(NORMALISED_COLUMNS["events"])
    assert str(e["ts"].dtype) == "datetime64[us, UTC]"
    assert e["ts"].iloc[0] == pd.Timestamp("2025-06-01 10:00", tz="UTC")
    assert e["event_type"].tolist() == ["purchase", "page_view"] and e["channel"].tolist() == ["store", "web"]
    assert e["value"].dtype == np.float64 and e["value"].iloc[0] == 12.5 and np.isnan(e["value"].iloc[1])
    assert e["content"].tolist() == [None, None]
    assert e["customer_id"].dtype == object
    assert k.dtypes.to_dict() == empty_contacts().dtypes.to_dict()
    assert str(k["ts"].dtype) == "datetime64[us, UTC]" and k["propensity"].dtype == np.float64


def test_contacts_without_propensity_or_policy_are_legacy_logs() -> None:
    legacy = contacts().drop(columns=["propensity", "policy"])
    data = validate(customers(), events(), legacy, now=NOW)
    assert data.usable
    assert data.contacts["propensity"].isna().all() and data.contacts["propensity"].dtype == np.float64
    assert data.contacts["policy"].tolist() == ["unknown", "unknown"]
    assert any("propensity" in warning for warning in data.warnings)


def _write_csv(directory: Path, tables: dict[str, pd.DataFrame]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(directory / f"{name}.csv", index=False)


def test_csv_and_parquet_round_trip(tmp_path: Path) -> None:
    tables = _tables()
    tables["customers"].loc[0, "customer_id"] = "007"  # leading zeros survive CSV
    tables["events"].loc[[0, 2], "customer_id"] = "007"
    tables["contacts"].loc[0, "customer_id"] = "007"
    _write_csv(tmp_path / "csv", tables)

    from_csv = validate_dir(tmp_path / "csv", now=NOW)
    assert from_csv.usable, from_csv.problems
    assert from_csv.customers["customer_id"].tolist() == ["007", "c2", "c3"]

    for name in ("customers", "events", "contacts"):
        write_table(getattr(from_csv, name), tmp_path / "parquet", name)
    from_parquet = validate_dir(tmp_path / "parquet", now=NOW)
    assert from_parquet.usable, from_parquet.problems
    for name in ("events", "contacts"):
        pd.testing.assert_frame_equal(getattr(from_parquet, name), getattr(from_csv, name))
    # Extra attributes are kept as read: CSV gives NaN for an empty text cell, parquet gives None.
    pd.testing.assert_frame_equal(from_parquet.customers.drop(columns="tier"), from_csv.customers.drop(columns="tier"))
    assert from_parquet.customers["tier"].tolist()[:2] == ["gold", "silver"]
    assert from_parquet.customers["tier"].isna().tolist() == [False, False, True]


def test_bare_transaction_log_is_usable(tmp_path: Path) -> None:
    purchases = events().iloc[[0]].drop(columns=["channel", "content"])
    _write_csv(tmp_path, {"customers": customers()[["customer_id", "signup_ts"]], "events": purchases})

    data = validate_dir(tmp_path, now=NOW)

    assert data.usable, data.problems
    assert data.contacts.empty
    assert data.contacts.dtypes.to_dict() == empty_contacts().dtypes.to_dict()
    assert data.events["channel"].tolist() == ["other"]
    assert any("no contacts table" in warning for warning in data.warnings)
    assert data.report("contacts").rows_in == 0


@pytest.mark.parametrize(("table", "column"), [("events", "event_type"), ("customers", "signup_ts"),
                                               ("contacts", "content")])  # fmt: skip
def test_missing_required_column_makes_data_unusable(table: str, column: str) -> None:
    tables = _tables()
    tables[table] = tables[table].drop(columns=[column])
    data = _run(tables)
    assert not data.usable
    assert any(problem.startswith(f"{table}: required column '{column}'") for problem in data.problems)
    report = data.report(table)
    assert report.rows_valid == 0 and report.rows_in == report.rows_quarantined


def test_headers_are_matched_case_insensitively() -> None:
    tables = _tables()
    tables["events"] = tables["events"].rename(columns={"event_type": " Event_Type "})
    assert _run(tables).usable


def test_missing_table_file_makes_data_unusable(tmp_path: Path) -> None:
    _write_csv(tmp_path, {"customers": customers()})
    data = validate_dir(tmp_path, now=NOW)
    assert not data.usable
    assert any(problem.startswith("events: table is missing") for problem in data.problems)


def test_no_valid_customers_makes_data_unusable() -> None:
    tables = _tables()
    tables["customers"]["signup_ts"] = "never"
    data = _run(tables)
    assert "customers: no valid customers" in data.problems


def test_more_than_half_quarantined_makes_data_unusable() -> None:
    tables = _tables()
    tables["events"].loc[[0, 1], "event_type"] = "purchace"
    data = _run(tables)
    assert not data.usable
    assert any(problem.startswith("events: 67% of rows quarantined") for problem in data.problems)
    tables["events"].loc[1, "event_type"] = "page_view"  # one of three is fine
    assert _run(tables).usable


def test_quarantine_files_and_report(tmp_path: Path) -> None:
    tables = _tables()
    tables["events"].loc[1, "event_type"] = "purchace"
    _write_csv(tmp_path / "data", tables)
    quarantine_dir = tmp_path / "quarantine"
    quarantine_dir.mkdir()
    (quarantine_dir / "customers.parquet").write_bytes(b"stale from an earlier run")

    data = validate_dir(tmp_path / "data", quarantine_dir=quarantine_dir, now=NOW)

    assert sorted(p.name for p in quarantine_dir.iterdir()) == ["events.parquet", "report.json"]
    stored = pd.read_parquet(quarantine_dir / "events.parquet")
    assert list(stored.columns) == list(QUARANTINE_COLUMNS)
    assert stored["row"].tolist() == [1]
    assert json.loads(stored["record"].iloc[0])["event_type"] == "purchace"
    report = json.loads((quarantine_dir / "report.json").read_text())
    assert report["tables"]["events"]["reasons"] == {"event_type: not in the event vocabulary": 1}
    assert report == json.loads(
        json.dumps(data.summary() | {"source": report["source"], "quarantine_files": {"events": "events.parquet"}})
    )
