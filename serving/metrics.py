"""Prometheus metrics of the API, exposed at `/metrics`.

One registry per app (tests build many apps in one process). With several uvicorn workers, set
`PROMETHEUS_MULTIPROC_DIR` to an empty directory shared by the workers: `/metrics` then aggregates them all
(prometheus_client's multiprocess mode); without it each worker reports its own counters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from journey.scoring import ModelSet

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _multiprocess() -> bool:
    """Whether metric values live in shared files: decided by prometheus_client when it was first imported.

    Checking the environment now would be wrong: importing `feast.metrics` sets PROMETHEUS_MULTIPROC_DIR in the
    process as a side effect, after which an env check would read Feast's files instead of our in-memory values."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")) and values.ValueClass.__name__ == "MmapedValue"


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self._info_labels: set[tuple[str, str, str]] = set()
        r = self.registry
        self.latency = Histogram(
            "parcours_http_request_duration_seconds",
            "Server-side latency of HTTP requests, by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "parcours_decisions_total",
            "Decisions served, by chosen channel and content.",
            ["channel", "content"],
            registry=r,
        )
        self.cold_starts = Counter(
            "parcours_cold_starts_total", "Decisions for customers unknown to the store.", registry=r
        )
        self.degraded = Counter(
            "parcours_degraded_total",
            "Decisions answered with the safe default (online store unreachable).",
            registry=r,
        )
        self.withdrawn = Counter(
            "parcours_decisions_withdrawn_total",
            "Contact decisions withdrawn to no contact: another worker contacted the customer meanwhile.",
            registry=r,
        )
        self.feedback = Counter("parcours_feedback_total", "Feedback recorded, by outcome.", ["outcome"], registry=r)
        self.errors = Counter(
            "parcours_errors_total",
            "Requests that failed, by kind (client_error, auth, too_large, server_error).",
            ["kind"],
            registry=r,
        )
        self.reloads = Counter(
            "parcours_model_reloads_total",
            "Model reload attempts, by task and outcome.",
            ["task", "outcome"],
            registry=r,
        )
        # Info-style gauge (value 1 per serving version): prometheus Info is not supported in multiprocess mode.
        self.model_info = Gauge(
            "parcours_model_info",
            "The model versions serving decisions (1 = serving).",
            ["task", "name", "version"],
            registry=r,
            multiprocess_mode="liveall",
        )

    def set_models(self, models: ModelSet) -> None:
        serving = {(m.task, m.name, m.version) for m in models.loaded()}
        if _multiprocess():  # clearing series is not implemented for shared files: swapped-out versions go to 0
            for labels in self._info_labels - serving:
                self.model_info.labels(*labels).set(0)
        else:
            self.model_info.clear()
        for labels in serving:
            self.model_info.labels(*labels).set(1)
        self._info_labels = serving

    def render(self) -> bytes:
        if _multiprocess():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
