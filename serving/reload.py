"""Hot reload: follow the `champion` alias without a restart and without failing a request in flight.

A background thread polls the registry every `model_reload_seconds`. When a task's alias points at a new version,
that version is loaded and smoke-tested off the request path; only then is a new ModelSet swapped in, as one
reference assignment (requests in flight finish with the set they started with). A version that fails to load
or to predict never replaces the one serving; it is retried at the next poll.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from journey.scoring import TASKS, LoadedModel, ModelSet
from journey.settings import Settings
from serving.metrics import Metrics

log = logging.getLogger(__name__)

Resolver = Callable[[str], str | None]
Loader = Callable[[str], LoadedModel | None]


class Swappable(Protocol):
    @property
    def models(self) -> ModelSet: ...

    def swap_models(self, models: ModelSet) -> None: ...


class ModelReloader:
    """Polls the registry and swaps in new champion versions; `check()` runs one poll (used by tests)."""

    def __init__(
        self,
        target: Swappable,
        resolve: Resolver,
        load: Loader,
        interval_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._target = target
        self._resolve = resolve
        self._load = load
        self._interval = interval_s
        self._metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failed: set[tuple[str, str]] = set()  # (task, version) that failed: not retried until it moves

    @classmethod
    def for_settings(cls, target: Swappable, settings: Settings, metrics: Metrics | None = None) -> ModelReloader:
        from serving.models import champion_version, load_task_model

        return cls(
            target,
            resolve=lambda task: champion_version(settings, task),
            load=lambda task: load_task_model(settings, task),
            interval_s=settings.model_reload_seconds,
            metrics=metrics,
        )

    def start(self) -> None:
        if self._interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="parcours-model-reloader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def check(self) -> dict[str, str]:
        """One poll; returns {task: new version} for what was swapped in."""
        with self._lock:  # a manual check and the poller never load the same version twice at once
            current = self._target.models
            updates: dict[str, LoadedModel] = {}
            for task in TASKS:
                model = self._candidate(task, getattr(current, task))
                if model is not None:
                    updates[task] = model
            if updates:
                self._target.swap_models(dataclasses.replace(self._target.models, **updates))
                log.info("models swapped in", extra={"versions": {t: m.version for t, m in updates.items()}})
            return {task: model.version for task, model in updates.items()}

    def _candidate(self, task: str, serving: LoadedModel | None) -> LoadedModel | None:
        from serving.models import smoke_test

        try:
            version = self._resolve(task)
        except Exception:  # registry unreachable: keep serving, try again at the next poll
            log.warning("registry poll failed for %s", task, exc_info=True)
            self._count(task, "registry_error")
            return None
        if version is None or (serving is not None and serving.version == version) or (task, version) in self._failed:
            return None
        try:
            model = self._load(task)
            if model is None:
                raise LookupError(f"{task}: the alias moved but no model could be read")
            smoke_test(model)
        except Exception:
            log.error(
                "%s version %s failed to load: still serving %s",
                task,
                version,
                serving.version if serving else "none",
                exc_info=True,
            )
            self._count(task, "failed")
            self._failed.add((task, version))
            return None
        self._count(task, "swapped")
        return model

    def _count(self, task: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.reloads.labels(task, outcome).inc()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:  # the poller must outlive any surprise
                log.exception("model reload poll failed")
