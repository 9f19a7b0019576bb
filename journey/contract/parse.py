"""Vectorised column parsers: each turns a raw column into its normalised dtype and says which cells are bad.

Nothing loops over rows in Python. Text columns are factorised once (a C hash pass) and every string operation
(strip, lower-case, vocabulary look-up, blank test) runs on the distinct values only, which keeps 50M-row event
logs cheap. Timestamps and numbers are parsed whole; the blank test then runs only on the cells that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

_CONSENT_WORDS: dict[str, bool] = {
    **dict.fromkeys(("true", "t", "yes", "y", "1", "1.0"), True),
    **dict.fromkeys(("false", "f", "no", "n", "0", "0.0"), False),
}


@dataclass(frozen=True)
class Parsed:
    """A parsed column: `values` in the normalised dtype, plus per-row masks of missing and invalid cells.

    Factorised columns also keep `codes` (index into `distinct`, -1 when missing or invalid) so later rules can
    work on distinct values (e.g. is this customer known?) instead of on every row.
    """

    values: pd.Series
    missing: np.ndarray
    invalid: np.ndarray
    codes: np.ndarray | None = None
    distinct: pd.Series | None = None

    def per_row(self, per_distinct: np.ndarray) -> np.ndarray:
        """Spread a boolean computed on `distinct` back to rows (False where the cell has no value)."""
        assert self.codes is not None, "only factorised columns have distinct values"
        out = np.zeros(len(self.codes), dtype=bool)
        present = self.codes >= 0
        out[present] = np.asarray(per_distinct, dtype=bool)[self.codes[present]]
        return out


def _is_text(raw: pd.Series) -> bool:
    return raw.dtype == object or isinstance(raw.dtype, pd.StringDtype)


def blank_mask(raw: pd.Series) -> np.ndarray:
    """Null, or a string that is empty once stripped: both mean "no value" whatever the file format."""
    missing = raw.isna().to_numpy(dtype=bool)
    if _is_text(raw) and ptypes.infer_dtype(raw, skipna=True) in {"string", "mixed", "mixed-integer"}:
        missing |= raw.str.strip().eq("").to_numpy(dtype=bool, na_value=False)
    return missing


def _blank_where(raw: pd.Series, failed: np.ndarray) -> np.ndarray:
    """Blank test restricted to `failed` rows (parse failures are few, the column may be 50M rows)."""
    missing = np.zeros(len(raw), dtype=bool)
    if failed.any():
        missing[failed] = blank_mask(raw[failed])
    return missing


def _factorised(raw: pd.Series, convert: Callable[[pd.Series], pd.Series]) -> tuple[np.ndarray, pd.Series, np.ndarray]:
    """Codes per row, converted distinct values (None = no value) and a per-row missing mask.

    `convert` receives the distinct raw values as text, stripped; blank ones are dropped before it sees them.
    """
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    text = pd.Series(np.asarray(uniques, dtype=object), dtype=object).astype(str).str.strip()
    blank = text.eq("").to_numpy(dtype=bool)
    converted = convert(text).astype(object).where(~blank, None)
    missing = codes < 0
    missing[~missing] = blank[codes[~missing]]
    return np.where(missing, -1, codes), converted.reset_index(drop=True), missing


def _spread(codes: np.ndarray, distinct: pd.Series, index: pd.Index, dtype: str = "object") -> pd.Series:
    """Per-row values from codes into `distinct` (None where the code is -1)."""
    out = np.full(len(codes), None, dtype=object)
    present = codes >= 0
    out[present] = distinct.to_numpy(dtype=object)[codes[present]]
    return pd.Series(out, index=index, dtype=dtype)


def _no_rows(n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool)


def parse_id(raw: pd.Series) -> Parsed:
    """Identifiers become non-empty strings; numeric ids (common in CSV exports) are fine."""
    if ptypes.is_float_dtype(raw.dtype) and bool((raw.dropna() % 1 == 0).all()):
        raw = raw.astype("Int64")  # ids that went through a float column must not gain a ".0"
    codes, distinct, missing = _factorised(raw, lambda text: text)
    return Parsed(_spread(codes, distinct, raw.index), missing, _no_rows(len(raw)), codes, distinct)


def parse_vocabulary(raw: pd.Series, names: Iterable[str]) -> Parsed:
    """Match against a closed list case-insensitively and return its canonical spelling."""
    canonical = {str(name).lower(): str(name) for name in names}
    codes, distinct, missing = _factorised(raw, lambda text: text.str.lower().map(canonical))
    unknown = distinct.isna().to_numpy(dtype=bool)
    invalid = _no_rows(len(raw))
    invalid[codes >= 0] = unknown[codes[codes >= 0]]
    codes = np.where(invalid, -1, codes)
    return Parsed(_spread(codes, distinct, raw.index), missing, invalid, codes, distinct)


def parse_text(raw: pd.Series) -> Parsed:
    """Free text kept as stripped strings; blank becomes None."""
    codes, distinct, missing = _factorised(raw, lambda text: text)
    return Parsed(_spread(codes, distinct, raw.index), missing, _no_rows(len(raw)), codes, distinct)


def parse_consent(raw: pd.Series) -> Parsed:
    """true/false, 1/0, yes/no, y/n in any case; null means no consent (never contact without proof)."""
    if ptypes.is_bool_dtype(raw.dtype):
        flags = raw.fillna(False).astype(bool)
        return Parsed(flags, raw.isna().to_numpy(dtype=bool), _no_rows(len(raw)))
    codes, distinct, missing = _factorised(raw, lambda text: text.str.lower().map(_CONSENT_WORDS))
    unknown = distinct.isna().to_numpy(dtype=bool)
    invalid = _no_rows(len(raw))
    invalid[codes >= 0] = unknown[codes[codes >= 0]]
    words = _spread(np.where(invalid, -1, codes), distinct, raw.index)
    return Parsed(words.where(~(invalid | missing), False).astype(bool), missing, invalid)


def parse_timestamp(raw: pd.Series) -> Parsed:
    """ISO 8601 text or timestamps → datetime64[us, UTC]; naive values are taken as UTC."""
    if ptypes.is_datetime64_any_dtype(raw.dtype):
        stamps = pd.to_datetime(raw, utc=True)
    elif ptypes.is_numeric_dtype(raw.dtype) or ptypes.is_bool_dtype(raw.dtype):
        # Epoch numbers are ambiguous (s? ms? ns?): refuse them rather than guess.
        stamps = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    else:
        stamps = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    stamps = stamps.dt.as_unit("us")
    failed = stamps.isna().to_numpy(dtype=bool)
    missing = _blank_where(raw, failed)
    return Parsed(stamps, missing, failed & ~missing)


def parse_number(raw: pd.Series) -> Parsed:
    """Finite float64; NaN where absent. Text like '12,50' or 'inf' is invalid, not silently NaN."""
    if ptypes.is_bool_dtype(raw.dtype):
        numbers = pd.Series(np.nan, index=raw.index, dtype="float64")
    elif ptypes.is_numeric_dtype(raw.dtype):
        numbers = raw.astype("float64")
    else:
        numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
    failed = ~np.isfinite(numbers.to_numpy(dtype="float64", na_value=np.nan))
    missing = _blank_where(raw, failed)
    invalid = failed & ~missing
    return Parsed(numbers.where(~invalid), missing, invalid)


def quoted(raw: pd.Series, mask: np.ndarray, limit: int = 60, quote: str = "'") -> pd.Series:
    """The user's original cell values at `mask`, quoted and cut to `limit` characters, for messages.

    Formatted once per distinct bad value: a million rows with the same typo cost one string operation.
    """
    codes, uniques = pd.factorize(raw[mask], use_na_sentinel=False)
    text = pd.Series(np.asarray(uniques, dtype=object), dtype=object).astype(str)
    text = text.where(text.str.len() <= limit, text.str.slice(0, limit) + "…")
    return pd.Series((quote + text + quote).to_numpy(dtype=object)[codes], dtype=object)
