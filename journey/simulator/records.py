"""Append-only, columnar logs of what the simulation emits, turned into contract frames at the end.

Rows are kept as small integer-coded numpy chunks (one per day and kind) so 200k customers stay cheap; strings
only appear when a frame is built, and they are shared objects (one per distinct value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from journey.vocabulary import EVENT_CHANNELS, EventType

EVENT_TYPE_NAMES: tuple[str, ...] = tuple(e.value for e in EventType)
EVENT_TYPE_CODE: dict[str, int] = {name: i for i, name in enumerate(EVENT_TYPE_NAMES)}
EVENT_CHANNEL_NAMES: tuple[str, ...] = tuple(sorted(EVENT_CHANNELS))
EVENT_CHANNEL_CODE: dict[str, int] = {name: i for i, name in enumerate(EVENT_CHANNEL_NAMES)}

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def to_utc(us: IntArray) -> pd.DatetimeIndex:
    """int64 microseconds since the epoch → datetime64[us, UTC]."""
    return pd.DatetimeIndex(np.asarray(us, dtype=np.int64).view("datetime64[us]")).tz_localize("UTC")


def _column(value: int | float | npt.ArrayLike, n: int, dtype: type) -> npt.NDArray[Any]:
    if np.ndim(value) == 0:
        return np.full(n, value, dtype=dtype)
    return np.array(value, dtype=dtype)  # a copy: callers may keep mutating their clocks


@dataclass
class EventLog:
    """Behavioural events; content is a catalog content code, -1 for none."""

    _chunks: list[tuple[IntArray, IntArray, IntArray, IntArray, IntArray, FloatArray]] = field(default_factory=list)

    def add(
        self,
        idx: IntArray,
        ts: IntArray,
        event_type: str,
        channel: int | IntArray,
        content: int | IntArray = -1,
        value: float | FloatArray = np.nan,
    ) -> None:
        n = len(idx)
        if n == 0:
            return
        self._chunks.append(
            (
                np.array(idx, dtype=np.int64),
                _column(ts, n, np.int64),
                np.full(n, EVENT_TYPE_CODE[event_type], dtype=np.int64),
                _column(channel, n, np.int64),
                _column(content, n, np.int64),
                _column(value, n, np.float64),
            )
        )

    def arrays(self) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray, FloatArray]:
        """All rows so far, concatenated (and re-chunked so later calls stay cheap)."""
        if not self._chunks:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, empty, empty, np.zeros(0, dtype=np.float64)
        if len(self._chunks) > 1:
            merged = tuple(np.concatenate(parts) for parts in zip(*self._chunks, strict=True))
            self._chunks = [merged]  # type: ignore[list-item]
        return self._chunks[0]

    def frame(
        self, customer_ids: npt.NDArray[np.object_], contents: tuple[str, ...], until_us: int | None = None
    ) -> pd.DataFrame:
        """The `events` contract frame, sorted by time (then customer), optionally only rows before `until_us`."""
        idx, ts, etype, channel, content, value = self.arrays()
        keep = np.flatnonzero(ts < until_us) if until_us is not None else np.arange(len(ts))
        order = keep[np.lexsort((idx[keep], ts[keep]))]
        content_names = np.array([*contents, None], dtype=object)
        return pd.DataFrame(
            {
                "customer_id": customer_ids[idx[order]],
                "ts": to_utc(ts[order]),
                "event_type": np.array(EVENT_TYPE_NAMES, dtype=object)[etype[order]],
                "channel": np.array(EVENT_CHANNEL_NAMES, dtype=object)[channel[order]],
                "content": content_names[content[order]],
                "value": value[order],
            }
        )


@dataclass
class ContactLog:
    """Logged decisions plus what the simulator knows about each (kept apart as ground truth)."""

    columns: dict[str, list[npt.NDArray[np.generic]]] = field(default_factory=dict)
    policies: list[str] = field(default_factory=list)
    size: int = 0
    # Outcomes, appended when known (web content is only resolved at the next visit): rows, engaged, caused.
    outcomes: list[tuple[IntArray, BoolArray, BoolArray]] = field(default_factory=list)

    def add(self, policy: str, **arrays: npt.NDArray[np.generic]) -> IntArray:
        """Append one decision batch; returns the row numbers it got."""
        n = len(next(iter(arrays.values())))
        rows = np.arange(self.size, self.size + n, dtype=np.int64)
        for name, values in arrays.items():
            self.columns.setdefault(name, []).append(np.asarray(values))
        self.policies.append(policy)
        self.columns.setdefault("_policy", []).append(np.full(n, len(self.policies) - 1, dtype=np.int64))
        self.size += n
        return rows

    def set_outcome(self, rows: IntArray, engaged: BoolArray, caused: BoolArray) -> None:
        self.outcomes.append((rows, engaged, caused))

    def outcome_arrays(self) -> tuple[BoolArray, BoolArray]:
        """engaged, goal_caused per row (False for contacts never resolved, e.g. web content never seen)."""
        engaged = np.zeros(self.size, dtype=bool)
        caused = np.zeros(self.size, dtype=bool)
        for rows, e, c in self.outcomes:
            engaged[rows] = e
            caused[rows] = c
        return engaged, caused

    def column(self, name: str) -> npt.NDArray[Any]:
        parts = self.columns.get(name, [])
        if len(parts) > 1:
            self.columns[name] = [np.concatenate(parts)]
        return self.columns[name][0] if parts else np.zeros(0)
