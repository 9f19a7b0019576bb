"""The serving fast paths equal the shared definitions they replace; micro-batched decisions equal single ones."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.policy_state import contact_state, contact_states
from features.request import REQUEST_FEATURE_NAMES, add_request_features
from journey.decision import Decision
from journey.logbook import WITHDRAWN_REASON, DecisionLog, DecisionRecord
from journey.policies import ContactStates
from journey.settings import Settings
from journey.vocabulary import NO_CONTACT
from serving.logs import JsonFormatter, customer_ref, log_config
from serving.online import FeatureRow
from serving.runtime import (
    POLICY_LOOKBACK,
    Decided,
    Runtime,
    add_recent_contacts,
    build_runtime,
    request_frame,
    request_frames,
)


@pytest.mark.parametrize(
    "now",
    [
        pd.Timestamp("2026-03-01 00:00", tz="UTC"),
        pd.Timestamp("2026-11-23 23:59:59.999999", tz="UTC"),
        pd.Timestamp("2026-06-15 13:45", tz="Europe/Paris"),
    ],
)
def test_request_frame_equals_add_request_features(now: pd.Timestamp) -> None:
    values = {
        "x": 1.5,
        "last_event_epoch_days": 20_000.25,
        "last_purchase_epoch_days": float("nan"),
        "last_contact_epoch_days": 19_990.0,
    }
    fast = request_frame(values, now)
    reference = add_request_features(pd.DataFrame([values]), now)
    assert fast.columns.tolist() == reference.columns.tolist()
    np.testing.assert_allclose(fast.to_numpy(float), reference.to_numpy(float), equal_nan=True)


def test_request_frame_of_an_unknown_customer_has_only_request_features() -> None:
    frame = request_frame({}, pd.Timestamp("2026-01-05 09:00", tz="UTC"))
    assert frame.columns.tolist() == list(REQUEST_FEATURE_NAMES)
    assert frame["hour_of_day"].iloc[0] == 9.0 and frame["day_of_week"].iloc[0] == 0.0


def test_json_logs_are_one_object_per_line_with_extras() -> None:
    record = logging.LogRecord("parcours.access", logging.INFO, __file__, 1, "request", None, None)
    record.route, record.status = "/v1/next-best-action", 200
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request" and line["route"] == "/v1/next-best-action" and line["status"] == 200
    assert line["level"] == "info" and line["ts"].endswith("Z")


def test_customer_refs_are_stable_and_not_the_id() -> None:
    assert customer_ref("c000042") == customer_ref("c000042") != customer_ref("c000043")
    assert "c000042" not in customer_ref("c000042") and len(customer_ref("c000042")) == 16


def test_log_config_silences_uvicorn_access_log() -> None:
    config = log_config(Settings(log_format="text"))
    assert config["loggers"]["uvicorn.access"]["handlers"] == []
    assert "format" in config["formatters"]["default"]


# --- the micro-batched path ---------------------------------------------------------------------------------------

NOW = pd.Timestamp("2026-03-02 10:00", tz="UTC")
NAN = float("nan")


def _assert_same_values(got: pd.Series | pd.DataFrame, want: pd.Series) -> None:
    np.testing.assert_allclose(got.to_numpy(float), want.to_numpy(float), equal_nan=True)


def test_request_frames_equal_request_frame_row_by_row() -> None:
    values = {
        "x": 1.5,
        "last_event_epoch_days": 20_000.25,
        "last_contact_epoch_days": 19_990.0,
        "days_since_last_contact": 3.0,  # a stored feature named like a request feature is recomputed
    }
    other_layout = {"y": 2.0, "last_purchase_epoch_days": 19_000.5}
    rows: list[dict[str, float] | None] = [values, None, {**values, "x": NAN}, other_layout]
    frame = request_frames(rows, NOW)
    assert set(REQUEST_FEATURE_NAMES) <= set(frame.columns) and frame.columns.is_unique
    for i, row in enumerate(rows):
        alone = request_frame(row or {}, NOW)
        _assert_same_values(frame.loc[i, list(alone.columns)], alone.iloc[0])
        absent = [c for c in frame.columns if c not in alone.columns]
        assert frame.loc[i, absent].isna().all()  # the features another row has are missing here
    assert frame["days_since_last_contact"].iloc[0] == pytest.approx(NOW.value / 86_400e9 - 19_990.0)


def test_request_frames_of_one_layout_keep_its_column_order() -> None:
    rows = [{"b": 1.0, "a": 2.0}, {"b": 3.0, "a": 4.0}]
    frame = request_frames(rows, NOW)
    assert frame.columns.tolist() == ["b", "a", *REQUEST_FEATURE_NAMES]
    assert frame[["b", "a"]].to_numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_contact_states_of_a_block_equal_the_policy_state_definition() -> None:
    """The one-block read (all-float frames, serving) and the column-by-column one (frames with ids, batch) give
    the scalar `contact_state` of every row."""
    rows = [
        {"consent_email": 1.0, "consent_sms": NAN, "contacts_email_1d": 1.0, "contacts_email_7d": 2.9,
         "contacts_email_30d": 5.0, "response_rate_email_90d": 0.5, "last_contact_epoch_days": 20_513.5,
         "unsubscribes_30d": 0.0},
        {"consent_email": 0.0, "consent_sms": 1.0, "contacts_sms_7d": 1.0, "contacts_email_30d": 3.0,
         "response_rate_email_90d": NAN, "last_contact_epoch_days": NAN, "unsubscribes_30d": 2.0},
        {"response_rate_email_90d": 7.0, "contacts_email_30d": 4.0},
        {},
    ]  # fmt: skip
    frame = pd.DataFrame(rows, dtype=float)
    records = [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]
    want = ContactStates.from_states([contact_state(row, [], NOW) for row in records])
    with_ids = frame.assign(customer_id=[f"c{i}" for i in range(len(frame))])
    empty = ContactStates.from_states([contact_state({}, [], NOW)] * len(frame))
    for got, expected in ((contact_states(frame, NOW), want), (contact_states(with_ids, NOW), want),
                          (contact_states(frame[[]], NOW), empty)):  # fmt: skip
        _assert_same_states(got, expected)


def _assert_same_states(got: ContactStates, want: ContactStates) -> None:
    assert got.n == want.n
    for group in ("consents", "sent_day", "sent_week", "ignored_recent"):
        mine, theirs = getattr(got, group), getattr(want, group)
        for key in mine.keys() | theirs.keys():
            zeros = np.zeros(got.n, dtype=np.int64)
            np.testing.assert_array_equal(mine.get(key, zeros), theirs.get(key, zeros), err_msg=f"{group}[{key}]")
    np.testing.assert_allclose(got.hours_since_last_contact, want.hours_since_last_contact, equal_nan=True)
    np.testing.assert_array_equal(got.days_since_opt_out, want.days_since_opt_out)


def _logged(decision_id: str, customer_id: str, ts: pd.Timestamp, channel: str) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id, customer_id=customer_id, ts=ts, channel=channel, content="x" if channel != "none"
        else "none", objective=None, propensity=1.0, policy="nba", explored=False, phase=None, cold_start=False,
        scores={}, model_versions={}, features={},
    )  # fmt: skip


def test_recent_contacts_of_a_batch_in_one_query_equal_the_scalar_contact_state(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.db")
    hours = pd.Timedelta(hours=1)
    log.append_decisions(
        [
            _logged("a", "c1", NOW - 2 * hours, "email"),
            _logged("b", "c1", NOW - 72 * hours, "email"),
            _logged("c", "c1", NOW - 30 * hours, "web"),
            _logged("d", "c1", NOW - 1 * hours, "none"),  # not a contact
            _logged("e", "c1", NOW - 240 * hours, "sms"),  # before c1's snapshot: the features know it
            _logged("f", "c2", NOW - 0.3 * hours, "sms"),
            _logged("g", "c2", NOW - 24 * hours, "sms"),  # exactly a day old: this week, not today
            _logged("h", "c3", NOW - 200 * hours, "email"),  # older than the 7-day lookback of an unknown customer
            _logged("i", "c4", NOW + 1 * hours, "push"),  # logged "in the future" by another clock: age 0
        ]
    )
    features = {
        "c1": ({"contacts_email_7d": 1.0, "contacts_email_1d": 0.0, "last_contact_epoch_days": 20_400.0}, 9),
        "c2": ({"consent_sms": 1.0, "contacts_sms_7d": 2.0, "contacts_sms_1d": 1.0}, 1),
        "c4": ({}, 2),
    }
    customers = ["c1", "c2", "c3", "c1", "c4"]  # c1 twice in one batch; c3 unknown
    rows = [
        FeatureRow(features[c][0], NOW - pd.Timedelta(days=features[c][1])) if c in features else None
        for c in customers
    ]
    since = {
        c: row.snapshot_ts if row and row.snapshot_ts else NOW - POLICY_LOOKBACK
        for c, row in zip(customers, rows, strict=True)
    }
    frame = request_frames([row.values if row else None for row in rows], NOW)
    batch = add_recent_contacts(contact_states(frame, NOW), customers, log.recent_contact_counts(since, NOW), NOW)
    scalar = [
        contact_state(row.values if row else {}, log.recent_contacts(c, since[c]), NOW)
        for c, row in zip(customers, rows, strict=True)
    ]
    _assert_same_states(batch, ContactStates.from_states(scalar))
    assert batch.sent_week["email"][0] == 3 and batch.sent_day["sms"][1] == 2 and batch.sent_week["sms"][1] == 4
    log.close()


class DictFeatures:
    """An online store of hand-made rows (reads many at once, like the packed reader)."""

    def __init__(self, rows: dict[str, dict[str, float]]) -> None:
        self.rows = rows
        self.reads: list[int] = []

    def read(self, customer_id: str) -> FeatureRow | None:
        return self.read_many([customer_id])[0]

    def read_many(self, customer_ids: Sequence[str]) -> list[FeatureRow | None]:
        self.reads.append(len(customer_ids))
        return [FeatureRow(self.rows[c], NOW - pd.Timedelta(days=2)) if c in self.rows else None for c in customer_ids]

    def ping(self) -> None:
        return None


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    from tests.unit.test_decision_batch import model_set

    rng = np.random.default_rng(3)
    rows = {
        f"c{i}": {"x1": float(rng.random()), "x2": float(rng.random()), "consent_email": 1.0, "consent_sms": 1.0}
        for i in range(40)
    }
    built = build_runtime(Settings(home=tmp_path), features=DictFeatures(rows), models=model_set())
    built.engine = dataclasses.replace(built.engine, exploration_rate=0.0)
    built.clock = lambda: NOW
    yield built
    built.close()


def _same(got: Decision, want: Decision) -> None:
    assert dataclasses.replace(got, decision_id="") == dataclasses.replace(want, decision_id="")


def _logged_ids(runtime: Runtime) -> list[str]:
    return runtime.decision_log.contacts_frame()["decision_id"].tolist()


def test_a_lone_request_is_decided_alone_and_logged(runtime: Runtime) -> None:
    expected = runtime.prepare("c1").decision
    decision, degraded = asyncio.run(runtime.decide("c1"))
    _same(decision, expected)
    assert not degraded and _logged_ids(runtime) == [decision.decision_id]
    assert runtime.batcher is not None and runtime.batcher.batch_sizes == {1: 1}


def test_concurrent_requests_are_decided_together_each_with_its_own_decision(runtime: Runtime) -> None:
    customers = [f"c{i}" for i in range(12)] + ["never-seen"]
    expected = [runtime.prepare(c).decision for c in customers]  # before anything is logged: the same state

    async def burst() -> list[tuple[Decision, bool]]:
        return await asyncio.gather(*(runtime.decide(c) for c in customers))

    answers = asyncio.run(burst())
    for (decision, degraded), want, customer in zip(answers, expected, customers, strict=True):
        assert decision.customer_id == customer and not degraded
        _same(decision, want)
    assert answers[-1][0].cold_start and not answers[0][0].cold_start
    assert runtime.batcher is not None
    sizes = runtime.batcher.batch_sizes
    assert sum(size * n for size, n in sizes.items()) == len(customers) and max(sizes) > 1
    assert max(runtime.features.reads) > 1  # type: ignore[attr-defined]  # one feature read for the batch
    assert sorted(_logged_ids(runtime)) == sorted(d.decision_id for d, _ in answers)


def test_a_customer_asked_for_twice_at_once_is_never_contacted_twice(runtime: Runtime) -> None:
    """The second request waits for the next micro-batch, whose contact state counts the first one's contact
    while its append is still on the way to the disk: the minimum gap and the daily caps hold. (The on-site web
    slot needs no consent and is not an outbound contact, so it stays allowed.)"""
    outbound = {name for name, spec in runtime.catalog.channels.items() if spec.consent is not None}
    first = runtime.prepare("c5").decision
    assert first.action.channel in outbound  # the customer would be contacted: the policies are what is tested

    async def burst() -> list[tuple[Decision, bool]]:
        return await asyncio.gather(*(runtime.decide(c) for c in ["c5", "c6", "c5", "c5"]))

    answers = [decision for decision, _ in asyncio.run(burst())]
    mine = [d for d in answers if d.customer_id == "c5"]
    sent = [d for d in mine if d.action.channel in outbound]
    assert len(sent) == 1 and sent[0].action == first.action
    assert all(any(e.reason.startswith("minimum gap") for e in d.excluded) for d in mine if d is not sent[0])
    assert runtime.in_flight == {}  # everything acknowledged is in the log, nothing is left in flight
    logged = runtime.decision_log.contacts_frame()
    assert ((logged["customer_id"] == "c5") & logged["channel"].isin(list(outbound))).sum() == 1


def test_a_failing_decision_fails_only_its_own_request(runtime: Runtime) -> None:
    decide_many = runtime.prepare_many

    def flaky(customer_ids: Sequence[str], explain: bool = False) -> list[Decided]:
        if "poison" in customer_ids:
            raise RuntimeError("the engine failed for poison")
        return decide_many(customer_ids, explain)

    runtime.prepare_many = flaky  # type: ignore[method-assign]

    async def burst() -> list[tuple[Decision, bool] | BaseException]:
        ids = ["c1", "c2", "poison", "c3", "c4"]
        return await asyncio.gather(*(runtime.decide(c) for c in ids), return_exceptions=True)

    answers = asyncio.run(burst())
    assert isinstance(answers[2], RuntimeError) and "poison" in str(answers[2])
    good = [a for i, a in enumerate(answers) if i != 2]
    assert all(isinstance(a, tuple) for a in good)
    assert sorted(_logged_ids(runtime)) == sorted(a[0].decision_id for a in good)  # type: ignore[index]


def test_a_batch_that_could_not_be_logged_is_never_acknowledged(runtime: Runtime) -> None:
    runtime.writer.close()

    async def burst() -> list[object]:
        return await asyncio.gather(*(runtime.decide(f"c{i}") for i in range(6)), return_exceptions=True)

    answers = asyncio.run(burst())
    assert all(isinstance(a, RuntimeError) and "closed" in str(a) for a in answers)
    assert runtime.decision_log.count() == 0


def test_the_batch_endpoint_path_equals_single_decisions(runtime: Runtime) -> None:
    customers = [f"c{i}" for i in range(30)] + ["unknown"]
    expected = [runtime.prepare(c).decision for c in customers]
    answers = asyncio.run(runtime.decide_many(customers))
    for (decision, _), want in zip(answers, expected, strict=True):
        _same(decision, want)
    assert runtime.decision_log.count() == len(customers)


def test_packed_reader_reads_a_micro_batch_like_one_customer_at_a_time(tmp_path: Path) -> None:
    from features.online_store.backends import SqliteVectors
    from features.online_store.codec import default_codec
    from serving.online import PackedOnlineFeatures

    codec = default_codec()
    backend = SqliteVectors(tmp_path / "online.db", "test")
    reader = PackedOnlineFeatures(Settings(home=tmp_path), backend=backend)
    values = np.random.default_rng(0).random((3, codec.width))
    values[1, :5] = np.nan
    stamps = np.array([1_700_000_000_000_000, 1_700_000_100_000_000, 1_700_000_200_000_000])
    backend.put_many(["a", "b", "c"], codec.encode_batch(stamps, values))
    asked = ["c", "missing", "a", "b", "a"]
    many = reader.read_many(asked)
    assert many[1] is None
    for customer, row in zip(asked, many, strict=True):
        alone = reader.read(customer)
        assert (row is None) == (alone is None)
        if row is not None and alone is not None:
            assert row.snapshot_ts == alone.snapshot_ts and row.values.keys() == alone.values.keys()
            np.testing.assert_array_equal(list(row.values.values()), list(alone.values.values()))
    assert many[0] is not None and many[0].snapshot_ts == pd.Timestamp(stamps[2], unit="us", tz="UTC")
    reader.close()


def test_a_contact_raced_by_another_worker_is_answered_and_logged_as_no_contact(runtime: Runtime) -> None:
    """Two workers on one log: ours read c5's contacts, then the other one contacted c5 before our append.
    Our decision is withdrawn to no contact, in the answer and in the log; a customer nobody raced keeps its own."""
    from tests.unit.test_decision_batch import model_set

    other = build_runtime(Settings(home=runtime.settings.home), features=runtime.features, models=model_set())
    other.engine = dataclasses.replace(other.engine, exploration_rate=0.0)
    other.clock = lambda: NOW
    mine = runtime.prepare_many(["c5", "c6"])
    assert all(d.decision.action.channel != NO_CONTACT for d in mine)
    theirs, _ = asyncio.run(other.decide("c5"))
    assert theirs.action.channel != NO_CONTACT
    raced = runtime.append(mine).result(timeout=10)
    answers = runtime.settle(mine, raced)
    assert raced == {mine[0].decision.decision_id}
    withdrawn = answers[0].decision
    assert withdrawn.action.channel == NO_CONTACT and withdrawn.reasons[-1] == WITHDRAWN_REASON
    assert withdrawn.alternatives[0] == mine[0].decision.action and withdrawn.propensity == 1.0
    assert answers[1].decision == mine[1].decision
    assert runtime.metrics.withdrawn._value.get() == 1
    logged = runtime.decision_log.contacts_frame().set_index("decision_id")["channel"]
    assert withdrawn.decision_id not in logged.index  # logged, but no training row
    assert logged[mine[1].decision.decision_id] == mine[1].decision.action.channel
    other.close()
