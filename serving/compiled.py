"""LightGBM forests compiled to native code with lleaves, cached per model version under `PARCOURS_HOME`.

Tree traversal is ~95 % of a batch run's CPU, and lleaves' compiled forests predict several times faster than
`Booster.predict` on big blocks and for one row. Compiling costs seconds to a minute per model, so the object code
is cached at `cache/compiled/<model name>/<version>/<key>.o` (key = model text, lleaves/llvmlite versions, compile
flags, host CPU: object code is host-specific) and shared by `parcours score` and every serving worker; a file lock
makes one process compile while the others wait and load; the compiler runs in a child process, so neither a crash
nor its memory peak reaches a server. Anything the compiled forest cannot do (`pred_contrib`, `raw_score`,
non-array inputs) and any failure (lleaves missing, compilation error, predictions that disagree with LightGBM on
probe rows) falls back to the Booster, logged.

Opt-in (`PARCOURS_COMPILED_MODELS=batch|always`): under pytest, after an in-process `parcours demo`, the first
compiled predict segfaults (not reproduced in a fresh `parcours score` process, nor in threads, nor after
importing the same libraries); until that is understood the Booster stays the default.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SMALL_INPUT_ROWS = 1024  # up to this many rows a predict runs on one thread (see serving.models.ServingBooster)
COMPILE_FLAGS: dict[str, Any] = {"finline": False, "fblocksize": 34, "fcodemodel": "large"}  # finline: 10× faster build
PROBE_ROWS = 256
COMPILE_TIMEOUT_S = 1800.0  # a 2,000-tree forest takes ~40 s on one core
_LLVM_LOCK = threading.Lock()  # LLVM's in-process set-up is not thread-safe; models load side by side
PROBE_RTOL, PROBE_ATOL = 1e-7, 1e-9


def available_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CompiledPredictor:
    """`predict(np.ndarray, **kwargs)` like a Booster, through the compiled forest when it can.

    Plain predictions (optionally `num_threads`) run compiled: one thread for small inputs, `num_threads` threads
    (0/None = every core) for large ones. Other keyword arguments and other inputs go to the Booster, which also
    answers every other attribute (`num_feature`, `feature_name`, ...).
    """

    def __init__(self, compiled: Any, booster: Any, small_rows: int = SMALL_INPUT_ROWS) -> None:
        self.compiled = compiled
        self.booster = booster
        self.small_rows = small_rows
        self.outputs = int(booster.num_model_per_iteration())

    def predict(self, data: Any, **kwargs: Any) -> np.ndarray:
        threads = kwargs.pop("num_threads", None)
        if kwargs or not isinstance(data, np.ndarray) or data.ndim != 2:
            if threads is not None:
                kwargs["num_threads"] = threads
            elif isinstance(data, np.ndarray) and len(data) <= self.small_rows:
                kwargs["num_threads"] = 1
            return np.asarray(self.booster.predict(data, **kwargs))
        if len(data) == 0:  # lleaves splits rows into n_jobs blocks of size 0 and fails on an empty input
            return np.empty((0, self.outputs) if self.outputs > 1 else 0)
        jobs = 1 if len(data) <= self.small_rows else int(threads or 0) or available_threads()
        return np.asarray(self.compiled.predict(np.ascontiguousarray(data, dtype=np.float64), n_jobs=jobs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)


@dataclass(frozen=True)
class CompileReport:
    """What `compiled_predictor` did: `compiled` (built now), `cached` (loaded), or `booster` (fell back)."""

    outcome: str
    seconds: float
    path: Path | None = None
    reason: str = ""


def compiled_predictor(
    booster: Any, cache_dir: Path, *, build: bool = True, small_rows: int = SMALL_INPUT_ROWS
) -> tuple[Any | None, CompileReport]:
    """A `CompiledPredictor` for `booster` (compiled into `cache_dir`, or loaded from it), or None with a reason.

    `build=False` only loads what is already cached (serving starts fast; `parcours score` builds the cache).
    """
    started = time.perf_counter()
    try:
        import lleaves  # noqa: F401
    except ImportError as error:
        return None, CompileReport("booster", 0.0, reason=f"lleaves is not installed ({error})")
    model_text = booster.model_to_string()
    object_path = cache_dir / f"{cache_key(model_text)}.o"
    if not object_path.exists() and not build:
        return None, CompileReport("booster", 0.0, object_path, "not compiled yet (cache only)")
    try:
        compiled, built = _load_or_compile(model_text, object_path)
        predictor = CompiledPredictor(compiled, booster, small_rows)
        check_agreement(predictor, booster)
    except Exception as error:  # any failure keeps the Booster: a slower model beats no model
        return None, CompileReport("booster", time.perf_counter() - started, object_path, repr(error))
    outcome = "compiled" if built else "cached"
    return predictor, CompileReport(outcome, time.perf_counter() - started, object_path)


def cache_key(model_text: str) -> str:
    """Identity of one compiled object: the model, the compiler and its flags, the CPU it runs on."""
    from importlib.metadata import version

    import llvmlite
    import llvmlite.binding as llvm

    with _LLVM_LOCK:
        try:
            llvm.initialize()
            llvm.initialize_native_target()
            features = llvm.get_host_cpu_features().flatten()
        except RuntimeError:
            features = ""
    parts = [
        model_text,
        version("lleaves"),
        llvmlite.__version__,
        repr(sorted(COMPILE_FLAGS.items())),
        llvm.get_host_cpu_name(),
        features,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _load_or_compile(model_text: str, object_path: Path) -> tuple[Any, bool]:
    """(lleaves model, whether it was compiled now), loaded in this process (on the calling thread)."""
    import lleaves

    built = ensure_object(model_text, object_path)
    model = lleaves.Model(model_file=str(object_path.with_suffix(".txt")))
    with _LLVM_LOCK:
        model.compile(cache=str(object_path), **COMPILE_FLAGS)
    return model, built


def ensure_object(model_text: str, object_path: Path) -> bool:
    """Compile `model_text` to `object_path` unless it is there; True when compiled now. Concurrent processes
    compile once (file lock); no LLVM runs in this process, so threads may call it side by side."""
    object_path.parent.mkdir(parents=True, exist_ok=True)
    model_file = object_path.with_suffix(".txt")
    with _locked(object_path.with_suffix(".lock")):
        if not model_file.exists():
            _atomic_write(model_file, model_text.encode())
        if object_path.exists():
            return False
        scratch = object_path.with_name(f".{object_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            compile_in_subprocess(model_file, scratch)
            os.replace(scratch, object_path)  # readers never see a half-written object
        finally:
            scratch.unlink(missing_ok=True)
        return True


def precompile(boosters: Sequence[tuple[Any, Path]]) -> dict[Path, str]:
    """Compile every (booster, cache dir) not cached yet, side by side (one child process each, as many as
    cores); returns {cache dir: failure} for those that failed. Loading stays with `compiled_predictor`."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        import lleaves  # noqa: F401
    except ImportError as error:
        return {cache_dir: f"lleaves is not installed ({error})" for _, cache_dir in boosters}
    jobs = [(cache_dir, text, cache_dir / f"{cache_key(text)}.o") for text, cache_dir in _texts(boosters)]
    failures: dict[Path, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), available_threads()))) as pool:
        futures = {cache_dir: pool.submit(ensure_object, text, path) for cache_dir, text, path in jobs}
        for cache_dir, future in futures.items():
            try:
                future.result()
            except Exception as error:
                failures[cache_dir] = repr(error)
    return failures


def _texts(boosters: Sequence[tuple[Any, Path]]) -> list[tuple[str, Path]]:
    return [(booster.model_to_string(), cache_dir) for booster, cache_dir in boosters]


_COMPILE_SCRIPT = """
import json, sys
import lleaves
lleaves.Model(model_file=sys.argv[1]).compile(cache=sys.argv[2], **json.loads(sys.argv[3]))
"""


def compile_in_subprocess(model_file: Path, object_path: Path, timeout_s: float = COMPILE_TIMEOUT_S) -> None:
    """Compile in a child process: a crash or the compiler's memory peak (GBs for big forests) stays there."""
    command = [sys.executable, "-c", _COMPILE_SCRIPT, str(model_file), str(object_path), json.dumps(COMPILE_FLAGS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0 or not object_path.exists():
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise RuntimeError(f"lleaves compilation of {model_file.name} failed: {detail[0]}")


def check_agreement(predictor: CompiledPredictor, booster: Any, rows: int = PROBE_ROWS) -> None:
    """Raise unless the compiled forest predicts what the Booster does on probe rows that walk both sides of
    the splits, with missing values (a stale or foreign object file must never serve)."""
    probe = probe_rows(booster, rows)
    expected = np.asarray(booster.predict(probe, num_threads=1))
    got = predictor.predict(probe, num_threads=1)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=PROBE_RTOL, atol=PROBE_ATOL):
        worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("nan")
        raise ValueError(f"compiled predictions differ from LightGBM (shapes {got.shape}/{expected.shape}, {worst})")


def probe_rows(booster: Any, rows: int, seed: int = 0) -> np.ndarray:
    """Rows whose values are the forest's own split thresholds ± a little, 20 % missing, plus an all-missing row."""
    width = int(booster.num_feature())
    rng = np.random.default_rng(seed)
    thresholds = _thresholds(booster, width)
    probe = np.full((rows, width), np.nan)
    for j, values in enumerate(thresholds):
        if len(values):
            picked = rng.choice(values, rows) + rng.choice([-1e-6, 1e-6], rows)
            probe[:, j] = np.where(rng.random(rows) < 0.2, np.nan, picked)
    return probe


def _thresholds(booster: Any, width: int) -> list[np.ndarray]:
    dump = booster.dump_model(num_iteration=min(booster.current_iteration(), 20))
    found: list[list[float]] = [[] for _ in range(width)]
    stack = [tree["tree_structure"] for tree in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        threshold = node["threshold"]
        if isinstance(threshold, str):  # categorical: "1||3||4"
            found[node["split_feature"]].extend(float(v) for v in threshold.split("||"))
        else:
            found[node["split_feature"]].append(float(threshold))
        stack.extend((node["left_child"], node["right_child"]))
    return [np.asarray(values, dtype=np.float64) for values in found]


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
