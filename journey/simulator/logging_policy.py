"""The outbound-policy interface of the environment, and the randomized logging policy used by default.

A policy sees what a real engine would see (ids, current consents, identification, the history so far); the
`truth` view is there only for oracle policies that evaluate the best achievable decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from journey.catalog import Action, Catalog
from journey.simulator.response import ResponseTruth
from journey.vocabulary import NO_CONTACT, NO_CONTENT


@dataclass(frozen=True)
class History:
    """The observable frames so far (rows strictly before `now`), built on demand."""

    events: Callable[[], pd.DataFrame]
    contacts: Callable[[], pd.DataFrame]


@dataclass(frozen=True)
class TruthView:
    """Oracle-only access to the latent state of the customers being decided (same order)."""

    phase: npt.NDArray[np.object_]
    response: Callable[[npt.ArrayLike, npt.ArrayLike], ResponseTruth]  # (channel, content) → truth per row


@dataclass(frozen=True)
class DecisionContext:
    day: int
    now: pd.Timestamp
    customer_ids: npt.NDArray[np.object_]
    consents: dict[str, npt.NDArray[np.bool_]]  # current consent per consent column, per customer
    identified: npt.NDArray[np.bool_]
    history: History
    truth: TruthView
    catalog: Catalog

    def allowed(self) -> npt.NDArray[np.bool_]:
        """(customers, catalog.actions) mask of the actions the current consents permit."""
        columns = []
        for action in self.catalog.actions:
            consent = self.catalog.channels[action.channel].consent
            if consent is None:
                columns.append(np.ones(len(self.customer_ids), dtype=bool))
            else:
                columns.append(self.consents.get(consent, np.zeros(len(self.customer_ids), dtype=bool)))
        return np.stack(columns, axis=1) if columns else np.zeros((len(self.customer_ids), 0), dtype=bool)


@dataclass(frozen=True)
class Decisions:
    """One action per decided customer; `propensity` is the probability the policy had of choosing it."""

    channel: npt.NDArray[np.object_]
    content: npt.NDArray[np.object_]
    propensity: npt.NDArray[np.float64]
    policy: str


class OutboundPolicy(Protocol):
    def decide(self, context: DecisionContext) -> Decisions: ...


class RandomLoggingPolicy:
    """A randomized test: "none" with probability `none_share`, else uniform over the actions the customer's
    current consents allow. It ignores phases on purpose, and records its exact propensities so off-policy
    estimates computed from its log are unbiased."""

    def __init__(self, catalog: Catalog, none_share: float = 0.3, seed: int = 0, name: str = "random") -> None:
        if not 0.0 <= none_share < 1.0:
            raise ValueError("none_share must be in [0, 1)")
        self.catalog = catalog
        self.none_share = none_share
        self.name = name
        self._rng = np.random.default_rng([seed, 7])
        self._actions: tuple[Action, ...] = catalog.actions

    def decide(self, context: DecisionContext) -> Decisions:
        allowed = context.allowed()
        n = len(context.customer_ids)
        options = allowed.sum(axis=1)
        u = self._rng.random(n)
        contact = (u >= self.none_share) & (options > 0)
        pick = np.floor(self._rng.random(n) * np.maximum(options, 1)).astype(np.int64)
        chosen = np.argmax(np.cumsum(allowed, axis=1) > pick[:, None], axis=1) if allowed.shape[1] else pick
        channels = np.array([a.channel for a in self._actions] or [NO_CONTACT], dtype=object)[chosen]
        contents = np.array([a.content for a in self._actions] or [NO_CONTENT], dtype=object)[chosen]
        propensity = np.where(
            contact, (1 - self.none_share) / np.maximum(options, 1), np.where(options > 0, self.none_share, 1.0)
        )
        return Decisions(
            channel=np.where(contact, channels, NO_CONTACT).astype(object),
            content=np.where(contact, contents, NO_CONTENT).astype(object),
            propensity=propensity.astype(np.float64),
            policy=self.name,
        )
