"""The serving fast paths equal the shared definitions they replace."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from features.request import REQUEST_FEATURE_NAMES, add_request_features
from journey.settings import Settings
from serving.logs import JsonFormatter, customer_ref, log_config
from serving.runtime import request_frame


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
