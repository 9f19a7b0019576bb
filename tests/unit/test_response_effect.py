"""Uplift as response propensity × effect per response: the Wald estimates, their shrinkage and the scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from journey.catalog import Action
from journey.scoring import LoadedModel, pair_uplifts, uplifts
from training.response_effect import effect_table, enough_responses, propensity_rows


def _rows(content: str, sent: int, goals_sent: int, responses: int, none: int, goals_none: int) -> pd.DataFrame:
    """Hand-made response rows: `sent` contacts of `content` (the first `responses` responded, the first
    `goals_sent` reached the goal) and `none` control rows for it (the first `goals_none` reached it anyway)."""
    treated = pd.DataFrame(
        {
            "action_channel": "email",
            "action_content": content,
            "label": (np.arange(sent) < goals_sent).astype(int),
            "responded": (np.arange(sent) < responses).astype(int),
        }
    )
    control = pd.DataFrame(
        {
            "action_channel": "none",
            "action_content": content,
            "label": (np.arange(none) < goals_none).astype(int),
            "responded": 0,
        }
    )
    return pd.concat([treated, control], ignore_index=True)


def test_the_wald_estimate_is_the_effect_per_response() -> None:
    # 1,000 sent: 20% respond, 10% reach the goal; 1,000 controls: 4% reach it anyway -> (0.10 - 0.04) / 0.2
    table = effect_table(_rows("guide", 1000, 100, 200, 1000, 40))
    (row,) = table.contents
    assert row.estimate == pytest.approx(0.30)
    assert (row.contacts, row.responses, row.controls) == (1000, 200, 1000)
    assert row.effect == pytest.approx(0.30)  # a single content: nothing to shrink toward but itself


def test_a_noisy_content_is_shrunk_toward_the_pooled_effect_and_a_precise_one_keeps_its_own() -> None:
    precise_a = _rows("a", 20_000, 2_000, 4_000, 20_000, 800)  # 0.30 per response, tight
    precise_b = _rows("b", 20_000, 1_000, 4_000, 20_000, 600)  # 0.10 per response, tight
    noisy = _rows("c", 40, 12, 4, 40, 2)  # 2.5 per response, from 4 responses
    table = effect_table(pd.concat([precise_a, precise_b, noisy], ignore_index=True))
    effect = {c.content: c for c in table.contents}
    assert effect["a"].effect == pytest.approx(0.30, abs=0.02)
    assert effect["b"].effect == pytest.approx(0.10, abs=0.02)
    assert effect["c"].estimate == pytest.approx(2.5)
    assert effect["c"].effect < 0.6  # pulled most of the way back
    assert table.effects(["a", "zzz"])["zzz"] == pytest.approx(max(table.pooled, 0.0))


def test_negative_effects_are_floored_and_tiny_contents_skipped() -> None:
    rows = pd.concat([_rows("bad", 2000, 20, 400, 2000, 200), _rows("tiny", 5, 1, 1, 5, 0)], ignore_index=True)
    table = effect_table(rows)
    assert [c.content for c in table.contents] == ["bad"]
    assert table.contents[0].estimate < 0 and table.contents[0].effect == 0.0


def test_propensity_rows_keep_contacts_labelled_by_response() -> None:
    rows = _rows("guide", 100, 30, 10, 50, 5)
    out = propensity_rows(rows)
    assert len(out) == 100 and out["label"].sum() == 10
    assert enough_responses(_rows("guide", 100, 30, 50, 10, 0))
    assert not enough_responses(_rows("guide", 100, 30, 49, 10, 0))


class _Constant:
    """A predictor whose P(respond) is the channel code / 10 (read from the second-last column)."""

    def predict(self, data: np.ndarray, **kwargs: object) -> np.ndarray:
        return (data[:, -2] + 1) / 10


def test_scoring_a_response_effect_model_multiplies_response_by_effect() -> None:
    model = LoadedModel(
        task="response",
        name="t",
        version="1",
        feature_names=("x",),
        predictor=_Constant(),
        metadata={
            "action_columns": {"action_channel": ["email", "sms", "none"], "action_content": ["a", "b", "none"]},
            "uplift_method": "response_effect",
            "effect_per_response": {"a": 0.5, "b": 0.1},
        },
    )
    actions = [Action("email", "a"), Action("sms", "b"), Action("push", "a")]
    treated, control = uplifts(model, np.array([1.0]), actions)
    assert treated[:2] == pytest.approx([0.1 * 0.5, 0.2 * 0.1]) and np.isnan(treated[2])
    assert control[:2] == pytest.approx([0.0, 0.0])
    matrix = np.array([[1.0], [2.0]])
    t, c = pair_uplifts(model, matrix, np.array([0, 1, 1]), np.array([0, 1, 2]), actions)
    assert t[:2] == pytest.approx([0.05, 0.02]) and np.isnan(t[2]) and np.allclose(c[:2], 0.0)


def test_a_content_with_a_rule_is_measured_where_the_rule_holds() -> None:
    from journey.catalog import load_catalog

    catalog = load_catalog()  # cart_reminder: cart_open >= 1
    with_cart = _rows("cart_reminder", 1000, 150, 200, 1000, 50).assign(cart_open=1)  # (0.15 - 0.05) / 0.2 = 0.5
    without = _rows("cart_reminder", 1000, 30, 200, 1000, 30).assign(cart_open=0)  # no effect without a cart
    rows = pd.concat([with_cart, without], ignore_index=True)
    (everywhere,) = effect_table(rows).contents
    (eligible,) = effect_table(rows, catalog).contents
    assert everywhere.estimate == pytest.approx(0.25)  # diluted by the customers it cannot help
    assert eligible.estimate == pytest.approx(0.5) and eligible.contacts == 1000
    # a rule on a feature the rows do not carry (a model score) is not applied
    (no_feature,) = effect_table(
        with_cart.drop(columns="cart_open").assign(action_content="win_back_offer"), catalog
    ).contents
    assert no_feature.contacts == 1000


def test_a_comparison_flags_a_model_that_predicts_another_label_than_the_holdout() -> None:
    from training.compare import Holdout, _holds_responses, _predicts_response

    contacts_only = _rows("guide", 10, 1, 2, 0, 0)
    with_controls = _rows("guide", 10, 1, 2, 10, 1)
    assert _holds_responses(Holdout("response", contacts_only, contacts_only["label"], "test", None, None))
    assert not _holds_responses(Holdout("response", with_controls, with_controls["label"], "test", None, None))
    model = LoadedModel("response", "r", "1", _Constant(), ("x",), {"uplift_method": "response_effect"})
    assert _predicts_response(model)
    assert not _predicts_response(LoadedModel("response", "r", "1", _Constant(), ("x",), {}))


def test_opt_out_rates_are_per_channel_and_smoothed() -> None:
    from training.response_effect import opt_out_rates

    rows = pd.DataFrame(
        {
            "action_channel": ["email"] * 99 + ["web"] * 9 + ["none"] * 5,
            "unsubscribed": [1] * 9 + [0] * 90 + [0] * 9 + [1] * 5,
        }
    )
    rates = opt_out_rates(rows)
    assert rates == pytest.approx({"email": 9.5 / 100, "web": 0.5 / 10})  # "none" rows are not contacts
