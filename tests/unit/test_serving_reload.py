"""Hot reload with a fake registry: new versions swap in atomically, broken ones never replace what serves."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from journey.scoring import LoadedModel, ModelSet
from serving.metrics import Metrics
from serving.models import ServingModel, smoke_test
from serving.reload import ModelReloader


class Constant:
    def __init__(self, value: float, width: int = 3) -> None:
        self.value, self.width = value, width

    def predict(self, data: np.ndarray, **_: Any) -> np.ndarray:
        return np.full(len(data), self.value)

    def num_feature(self) -> int:
        return self.width


def model(task: str, version: str, value: float = 0.5) -> LoadedModel:
    return LoadedModel(task, f"parcours-{task}", version, Constant(value), ("a", "b", "c"))


class Target:
    def __init__(self, models: ModelSet) -> None:
        self.models = models
        self.swaps = 0

    def swap_models(self, models: ModelSet) -> None:
        self.models = models
        self.swaps += 1


def reloader(target: Target, registry: dict[str, str], store: dict[tuple[str, str], LoadedModel]) -> ModelReloader:
    return ModelReloader(
        target,
        resolve=registry.get,
        load=lambda task: store[(task, registry[task])],
        interval_s=0,
        metrics=Metrics(),
    )


def test_a_moved_alias_is_swapped_in_and_an_unmoved_one_is_not() -> None:
    target = Target(ModelSet(churn=model("churn", "1"), purchase=model("purchase", "4")))
    registry = {"churn": "2", "purchase": "4"}
    store = {("churn", "2"): model("churn", "2", 0.7), ("purchase", "4"): model("purchase", "4")}
    assert reloader(target, registry, store).check() == {"churn": "2"}
    assert target.models.churn is not None and target.models.churn.version == "2"
    assert target.models.purchase is not None and target.models.purchase.version == "4"
    assert target.swaps == 1


def test_a_version_that_fails_to_load_or_predict_keeps_the_serving_one() -> None:
    serving = model("churn", "1")
    target = Target(ModelSet(churn=serving))
    registry = {"churn": "2"}
    nan_model = dataclasses.replace(model("churn", "2"), predictor=Constant(float("nan")))
    store = {("churn", "2"): nan_model}
    poller = reloader(target, registry, store)
    assert poller.check() == {} and target.models.churn is serving
    registry["churn"] = "3"  # not in the store: load raises KeyError
    assert poller.check() == {} and target.models.churn is serving
    assert target.swaps == 0


def test_registry_errors_keep_serving() -> None:
    target = Target(ModelSet(churn=model("churn", "1")))

    def down(task: str) -> str:
        raise ConnectionError("registry down")

    poller = ModelReloader(target, resolve=down, load=lambda t: None, interval_s=0)
    assert poller.check() == {} and target.models.churn is not None


def test_smoke_test_checks_width_and_finiteness() -> None:
    smoke_test(model("churn", "1"))
    with pytest.raises(ValueError, match="inputs"):
        smoke_test(dataclasses.replace(model("churn", "1"), predictor=Constant(0.5, width=7)))
    with pytest.raises(ValueError, match="non-finite"):
        smoke_test(dataclasses.replace(model("churn", "1"), predictor=Constant(float("inf"))))


def test_serving_model_matrix_equals_the_reindex_path() -> None:
    import pandas as pd

    base = LoadedModel("churn", "n", "1", Constant(0.5), ("b", "zz", "a"))
    fast = ServingModel("churn", "n", "1", Constant(0.5), ("b", "zz", "a"))
    frame = pd.DataFrame([[1.0, 2.0, np.nan], [4.0, 5.0, 6.0]], columns=["a", "b", "c"])
    for _ in range(2):  # second call uses the cached layout
        np.testing.assert_array_equal(fast.matrix(frame), base.matrix(frame))
    mixed = frame.assign(customer_id=["x", "y"])
    np.testing.assert_array_equal(fast.matrix(mixed), base.matrix(mixed))
