"""Uplift as response × effect: who answers a contact is learnable, what an answer is worth is a per-content average.

The S-learner asks LightGBM for P(goal | x, action) − P(goal | x, none): a difference of two probabilities of a
rare goal, each dominated by the organic goal rate. On the simulator its uplift estimates correlated at 0.05 with
the truth within an action (docs/policy-evaluation.md): the logs do not hold enough goals to learn individual
effects of a rare outcome. They do hold plenty of *responses* (opens, clicks, answers: 13% of contacts), and a
contact can only cause its goal through a response. So parcours splits the uplift in two:

    uplift(x, a) = P(respond | x, a) × effect(content of a)

- P(respond | x, a): a LightGBM classifier on the logged contacts (label `responded`), individual and accurate;
- effect(k): the causal effect of a response to content k on k's goal — the Wald (instrumental-variable)
  estimator on randomized logs, (P(goal | sent k) − P(goal | none)) / P(respond | sent k): the contact is the
  instrument, the response the treatment actually taken. Per content, with its standard error, then shrunk by
  empirical Bayes toward the pooled effect in proportion to its noise (a content with few logged contacts gets
  the pooled value, not its own noise).

It is exact under two assumptions, stated so users can judge them: a contact changes the goal only through a
response (exclusion), and a response to content k is worth the same to every customer (effect homogeneity within
a content: heterogeneity lives in who responds). `effect_table` needs logs from a randomized (exploring) policy:
under a deterministic policy the treated and control rows of a content are different customers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from journey.catalog import Catalog, EligibilityRule
from journey.vocabulary import NO_CONTACT

METHOD = "response_effect"
MIN_RESPONSES = 50  # below this many logged responses, no propensity model: the S-learner is trained instead


class ContentEffect(BaseModel):
    """One content's effect per response: the raw Wald estimate, its standard error, and the shrunk value used."""

    model_config = ConfigDict(frozen=True)

    content: str
    contacts: int
    responses: int
    controls: int
    goal_rate_sent: float
    goal_rate_none: float
    response_rate: float
    estimate: float
    se: float
    effect: float  # shrunk, floored at 0: the value decisions use


class EffectTable(BaseModel):
    """Per-content effects and the pooled effect that stands in for contents without enough logs."""

    model_config = ConfigDict(frozen=True)

    pooled: float
    spread: float  # estimated standard deviation of the true effects around the pooled one
    contents: list[ContentEffect]

    def effects(self, names: list[str] | tuple[str, ...]) -> dict[str, float]:
        """Effect per catalog content; contents without an estimate get the pooled effect."""
        known = {c.content: c.effect for c in self.contents}
        return {name: known.get(name, max(self.pooled, 0.0)) for name in names}

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([c.model_dump() for c in self.contents])


def propensity_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The logged contacts only, labelled by whether the customer responded: the response-propensity table."""
    treated = (rows["action_channel"].astype(str) != NO_CONTACT).to_numpy()
    out = rows.loc[treated].copy()
    out["label"] = out["responded"].astype(np.int64)
    return out


def opt_out_rates(rows: pd.DataFrame) -> dict[str, float]:
    """P(the customer opts out of the channel within the window | a contact on it), per channel of the logged
    contacts, smoothed by half a pseudo-opt-out (Jeffreys): the expected cost of a contact in lost consent is this
    rate × the catalog's `consent_value`."""
    treated = rows.loc[(rows["action_channel"].astype(str) != NO_CONTACT).to_numpy()]
    if "unsubscribed" not in treated or treated.empty:
        return {}
    grouped = treated.groupby(treated["action_channel"].astype(str))["unsubscribed"].agg(["sum", "size"])
    return {str(c): float((r["sum"] + 0.5) / (r["size"] + 1.0)) for c, r in grouped.iterrows()}


def enough_responses(rows: pd.DataFrame) -> bool:
    """Whether the logs hold enough responses to learn who responds."""
    treated = rows["action_channel"].astype(str) != NO_CONTACT
    return "responded" in rows and int(rows.loc[treated, "responded"].sum()) >= MIN_RESPONSES


def rule_mask(rows: pd.DataFrame, rules: list[EligibilityRule]) -> np.ndarray:
    """Rows where every rule whose feature the rows carry holds (a missing value fails, as in the engine);
    rules on a feature the training rows lack (model scores such as churn_risk) are not applied."""
    ok = np.ones(len(rows), dtype=bool)
    for rule in rules:
        if rule.feature not in rows:
            continue
        ok &= rule.holds_for(pd.to_numeric(rows[rule.feature], errors="coerce").to_numpy(dtype=np.float64))
    return ok


def effect_table(rows: pd.DataFrame, catalog: Catalog | None = None, min_contacts: int = 20) -> EffectTable:
    """Wald estimates per content from response rows (`training.labels.response_dataset`), shrunk by empirical
    Bayes (DerSimonian–Laird) toward their precision-weighted mean.

    With a `catalog`, a content's effect is estimated on the rows where its feature rules hold (treated and
    control alike): a cart reminder is only ever sent to open carts, so its effect there is what matters, not
    its average over customers without a cart, where it can do nothing."""
    treated = rows["action_channel"].astype(str) != NO_CONTACT
    content = rows["action_content"].astype(str)
    label = rows["label"].to_numpy(dtype=np.float64)
    responded = rows["responded"].to_numpy(dtype=np.float64)
    raw: list[dict[str, float | int | str]] = []
    for name in sorted(set(content[treated])):
        spec = catalog.contents.get(name) if catalog is not None else None
        eligible = rule_mask(rows, spec.rules) if spec is not None else np.ones(len(rows), dtype=bool)
        sent = (treated & (content == name)).to_numpy() & eligible
        none = (~treated & (content == name)).to_numpy() & eligible
        responses = int(responded[sent].sum())
        if sent.sum() < min_contacts or none.sum() < min_contacts or responses < 1:
            continue
        rate = responded[sent].mean()
        estimate = (label[sent].mean() - label[none].mean()) / rate
        se = np.sqrt(label[sent].var(ddof=1) / sent.sum() + label[none].var(ddof=1) / none.sum()) / rate
        raw.append({"content": name, "contacts": int(sent.sum()), "responses": responses, "controls": int(none.sum()),
                    "goal_rate_sent": float(label[sent].mean()), "goal_rate_none": float(label[none].mean()),
                    "response_rate": float(rate), "estimate": float(estimate), "se": float(max(se, 1e-9))})  # fmt: skip
    if not raw:
        return EffectTable(pooled=0.0, spread=0.0, contents=[])
    estimate = np.array([r["estimate"] for r in raw], dtype=np.float64)
    se = np.array([r["se"] for r in raw], dtype=np.float64)
    pooled, spread2 = _moments(estimate, se)
    shrunk = pooled + spread2 / (spread2 + se**2) * (estimate - pooled)
    contents = [ContentEffect(**r, effect=float(max(s, 0.0))) for r, s in zip(raw, shrunk, strict=True)]  # type: ignore[arg-type]
    return EffectTable(pooled=float(pooled), spread=float(np.sqrt(spread2)), contents=contents)


def _moments(estimate: np.ndarray, se: np.ndarray) -> tuple[float, float]:
    """Precision-weighted mean and the between-content variance (DerSimonian–Laird, floored at 0)."""
    w = 1.0 / se**2
    pooled = float((w * estimate).sum() / w.sum())
    if len(estimate) < 2:
        return pooled, 0.0
    q = float((w * (estimate - pooled) ** 2).sum())
    denominator = float(w.sum() - (w**2).sum() / w.sum())
    spread2 = max((q - (len(estimate) - 1)) / denominator, 0.0) if denominator > 0 else 0.0
    return pooled, spread2
