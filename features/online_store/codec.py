"""Exact, compact encoding of one customer's feature vector (all FEATURE_NAMES) and its snapshot time.

Layout of a blob (little-endian):
    version u8 | layout u32 (crc32 of the feature names) | snapshot_us i64 | 2-bit class per feature | values
Each feature's class says how its value is stored: 0 = +0.0 (no bytes), 1 = NaN (no bytes), 2 = float32 (4 bytes,
only when float32 holds the value exactly: counts, flags, halves), 3 = float64 (8 bytes). Values follow in feature
order, float32s first then float64s. Decoding gives back the float64 values bit for bit (NaN payloads aside), so
online == offline exactly, in ~2.6x less space than 109 raw float64 (measured on the demo: 56 % zeros, 12 % NaN).
Why not zlib: as small, but not vectorisable for bulk encoding and slower to decode on the serving path.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

VERSION = 1
_HEAD = struct.Struct("<BIq")
ZERO, NAN, F32, F64 = 0, 1, 2, 3
_SHIFTS = np.array([0, 2, 4, 6], dtype=np.uint8)
_UNPACK = (np.arange(256, dtype=np.uint8)[:, None] >> _SHIFTS) & 3  # code byte -> its 4 classes


class LayoutMismatch(ValueError):
    """A blob written for another feature list (or another codec version): re-materialize with full=True."""


def layout_id(names: Sequence[str]) -> int:
    return zlib.crc32("\n".join(names).encode("utf-8"))


@dataclass(frozen=True)
class VectorCodec:
    """Encodes/decodes vectors of `names` (in that order)."""

    names: tuple[str, ...]
    layout: int = field(init=False)
    _code_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", layout_id(self.names))
        object.__setattr__(self, "_code_bytes", (len(self.names) + 3) // 4)

    @property
    def width(self) -> int:
        return len(self.names)

    # ------------------------------------------------------------------------------------------------ encode

    def encode_batch(self, snapshot_us: np.ndarray, values: np.ndarray) -> list[bytes]:
        """One blob per row of `values` (n, width) float64, vectorised over rows (~1 us per row)."""
        x = np.ascontiguousarray(values, dtype=np.float64)
        n = len(x)
        if x.shape != (n, self.width):
            raise ValueError(f"values must have shape (n, {self.width}), got {x.shape}")
        ts = np.asarray(snapshot_us, dtype=np.int64)
        if ts.shape != (n,):
            raise ValueError(f"snapshot_us must have shape ({n},), got {ts.shape}")
        cls = self.classes(x)
        heads = self._heads(ts, cls)
        is32, is64 = cls == F32, cls == F64
        buf32 = x[is32].astype("<f4").tobytes()
        buf64 = x[is64].astype("<f8").tobytes()
        end32 = np.cumsum(is32.sum(axis=1, dtype=np.int64)) * 4
        end64 = np.cumsum(is64.sum(axis=1, dtype=np.int64)) * 8
        start32 = np.r_[0, end32[:-1]].tolist()
        start64 = np.r_[0, end64[:-1]].tolist()
        step = _HEAD.size + self._code_bytes
        return [
            b"".join((heads[i * step : (i + 1) * step], buf32[a32:b32], buf64[a64:b64]))
            for i, a32, b32, a64, b64 in zip(range(n), start32, end32.tolist(), start64, end64.tolist(), strict=True)
        ]

    @staticmethod
    def classes(x: np.ndarray) -> np.ndarray:
        """Storage class of every value (uint8, same shape as x)."""
        with np.errstate(invalid="ignore", over="ignore"):
            exact32 = x.astype(np.float32).astype(np.float64) == x
        cls = np.full(x.shape, F64, dtype=np.uint8)
        cls[exact32] = F32
        cls[(x == 0) & ~np.signbit(x)] = ZERO
        cls[np.isnan(x)] = NAN
        return cls

    def _heads(self, ts: np.ndarray, cls: np.ndarray) -> bytes:
        n = len(cls)
        padded = np.zeros((n, self._code_bytes * 4), dtype=np.uint8)
        padded[:, : self.width] = cls
        quads = padded.reshape(n, self._code_bytes, 4) << _SHIFTS
        codes = np.bitwise_or.reduce(quads, axis=2).astype(np.uint8)
        head = np.empty(n, dtype=[("v", "u1"), ("layout", "<u4"), ("ts", "<i8")])
        head["v"], head["layout"], head["ts"] = VERSION, self.layout, ts
        rows = np.empty((n, _HEAD.size + self._code_bytes), dtype=np.uint8)
        rows[:, : _HEAD.size] = head.view(np.uint8).reshape(n, _HEAD.size)
        rows[:, _HEAD.size :] = codes
        return rows.tobytes()

    # ------------------------------------------------------------------------------------------------ decode

    def decode(self, blob: bytes) -> tuple[int, np.ndarray]:
        """(snapshot_us, float64 vector); raises LayoutMismatch for a blob of another layout."""
        version, layout, ts = _HEAD.unpack_from(blob)
        if version != VERSION or layout != self.layout:
            raise LayoutMismatch(
                f"online vector written with layout {layout:#x} v{version}, expected {self.layout:#x} v{VERSION}: "
                "the feature list changed; run `parcours features materialize --full`"
            )
        packed = np.frombuffer(blob, dtype=np.uint8, count=self._code_bytes, offset=_HEAD.size)
        cls = _UNPACK[packed].reshape(-1)[: self.width]
        out = np.zeros(self.width, dtype=np.float64)
        out[cls == NAN] = np.nan
        m32, m64 = cls == F32, cls == F64
        n32, n64 = np.count_nonzero(m32), np.count_nonzero(m64)
        at = _HEAD.size + self._code_bytes
        if len(blob) != at + 4 * n32 + 8 * n64:
            raise ValueError(f"corrupt online vector: {len(blob)} bytes, expected {at + 4 * n32 + 8 * n64}")
        out[m32] = np.frombuffer(blob, dtype="<f4", count=n32, offset=at)
        out[m64] = np.frombuffer(blob, dtype="<f8", count=n64, offset=at + 4 * n32)
        return int(ts), out


@lru_cache(maxsize=1)
def default_codec() -> VectorCodec:
    """The codec of the `nba` feature service: every registry feature in registry order."""
    from features.definitions import FEATURE_NAMES

    return VectorCodec(tuple(FEATURE_NAMES))
