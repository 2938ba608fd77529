"""Reference profiles and drift checks (PSI and two-sample Kolmogorov-Smirnov).

Plain Python (numpy, pandas, scipy): no Django import, so it can be tested and
benchmarked alone (``bench/bench_drift.py`` imports this file by path).

Workflow
--------
1. At training/registration time, :func:`build_profile` summarises the reference data
   into a small JSON-serialisable dict (a few hundred KB at most: numeric features keep
   at most ``sample_size`` values each).
2. At monitoring time, :func:`drift_report` compares a current batch against that stored
   profile; the raw reference data is not needed any more. A batch too big for memory is
   fed chunk by chunk to a :class:`DriftStream`, whose report is the same.

Profile shape (``json.dumps``-able as is)::

    {"version": 1, "bins": 10, "sample_size": 5000, "n_rows": 1000000,
     "features": {
        "price": {"kind": "numeric", "n": 999000, "null_ratio": 0.001,
                  "edges": ["-inf", 3.2, ..., 17.9, "inf"],   # len(shares) + 1 edges
                  "shares": [0.1, ..., 0.1],
                  "mean": 10.1, "std": 2.9, "min": 0.4, "max": 22.0,
                  "sample": [0.41, ...]},                    # sorted, <= sample_size values
        "region": {"kind": "categorical", "n": 1000000, "null_ratio": 0.0,
                   "categories": {"north": 0.4, "south": 0.35, ..., "__other__": 0.0}},
        "__prediction__": {... numeric ...}}}

Numeric bins follow the usual PSI convention: the inner edges are the reference deciles
(deduplicated, so discrete data gets fewer bins); bins are right-closed,
``(-inf, e1], (e1, e2], ..., (ek, +inf)``; the open outer edges are stored as the strings
``"-inf"``/``"inf"`` so the profile stays strict JSON. Nulls (NaN/None/NaT) and
non-finite values are left out of the shares and the sample and reported as
``null_ratio``. Booleans, strings, objects and pandas categoricals are categorical;
ints, floats and datetimes (as epoch seconds) are numeric.

Report shape: see :func:`drift_report`.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "OTHER",
    "PREDICTION_KEY",
    "PROFILE_VERSION",
    "DriftStream",
    "build_profile",
    "categorical_psi",
    "drift_report",
    "ks_against_sample",
    "numeric_psi",
    "psi",
    "shift_batch",
]

PROFILE_VERSION = 1
PREDICTION_KEY = "__prediction__"
OTHER = "__other__"
METHODS = ("PSI", "KS")
_KS_EXACT_MAX_N = 10_000  # scipy.stats.ks_2samp(method="auto") is exact up to this size


# ---------------------------------------------------------------------------- helpers


def _is_categorical(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return True
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return False
    return not pd.api.types.is_numeric_dtype(dtype)


def _as_float(values: Any) -> np.ndarray:
    """Float64 array of a numeric-ish column/array; nulls become NaN. No copy for float64."""
    if isinstance(values, pd.Series | pd.Index):
        dtype = values.dtype
        if dtype == np.float64:
            return values.to_numpy()
        if pd.api.types.is_datetime64_any_dtype(dtype):
            series = pd.Series(values)
            if getattr(series.dt, "tz", None) is not None:
                series = series.dt.tz_convert("UTC").dt.tz_localize(None)
            arr = series.to_numpy(dtype="datetime64[ns]")
            out = arr.astype("int64").astype(np.float64) / 1e9
            out[np.isnat(arr)] = np.nan
            return out
        if pd.api.types.is_timedelta64_dtype(dtype):
            arr = pd.Series(values).to_numpy(dtype="timedelta64[ns]")
            out = arr.astype("int64").astype(np.float64) / 1e9
            out[np.isnat(arr)] = np.nan
            return out
        try:
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    arr = np.asarray(values)
    if arr.dtype == np.float64:
        return arr.ravel()
    try:
        return arr.astype(np.float64).ravel()
    except (TypeError, ValueError):
        return _as_float(pd.Series(arr.ravel()))


def _finite(values: np.ndarray) -> np.ndarray:
    """The finite values (drops NaN and +-inf); no copy when all are finite."""
    mask = np.isfinite(values)
    if mask.all():
        return values
    return values[mask]


def _inner_edges(entry: Mapping[str, Any]) -> np.ndarray:
    edges = entry.get("edges") or []
    return np.asarray([float(e) for e in edges[1:-1]], dtype=np.float64)


def _bin_counts(values: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Counts of (finite) values in the right-closed bins (-inf, e1], ..., (ek, inf).

    One vectorised comparison per edge (there are at most ``bins - 1`` edges), which is
    several times faster than ``np.searchsorted`` over a million values.
    """
    n = values.size
    le = np.fromiter((np.count_nonzero(values <= e) for e in inner), dtype=np.int64, count=inner.size)
    return np.diff(np.concatenate(([0], le, [n])))


def _category_keys(index: pd.Index) -> pd.Index:
    return index.astype(str)


def _category_counts(series: pd.Series) -> pd.Series:
    """Non-null counts per category, keyed by the category's ``str`` form."""
    vc = series.value_counts(dropna=True, sort=False)
    vc = vc[vc.to_numpy() > 0]
    counts = pd.Series(vc.to_numpy(dtype=np.int64), index=_category_keys(vc.index))
    if not counts.index.is_unique:  # e.g. 1 and "1" in one object column
        counts = counts.groupby(level=0, sort=False).sum()
    return counts


def _feature_seed(seed: int, name: str) -> np.random.SeedSequence:
    # Per-feature stream: adding or reordering features leaves the other samples unchanged.
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------- profile


def _numeric_profile(values: Any, *, bins: int, sample_size: int, rng: np.random.Generator) -> dict:
    raw = _as_float(values)
    total = raw.size
    x = _finite(raw)
    n = int(x.size)
    entry: dict[str, Any] = {
        "kind": "numeric",
        "n": n,
        "null_ratio": float(1 - n / total) if total else 0.0,
    }
    if n == 0:
        entry.update(edges=["-inf", "inf"], shares=[1.0], mean=None, std=None, min=None, max=None, sample=[])
        return entry
    inner = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    shares = _bin_counts(x, inner) / n
    if n > sample_size:
        sample = x[rng.choice(n, size=sample_size, replace=False)]
    else:
        sample = x.copy()
    sample.sort()
    entry.update(
        edges=["-inf", *inner.tolist(), "inf"],
        shares=shares.tolist(),
        mean=_json_float(x.mean()),
        std=_json_float(x.std(ddof=1)) if n > 1 else 0.0,
        min=float(x.min()),
        max=float(x.max()),
        sample=sample.tolist(),
    )
    return entry


def _categorical_profile(series: pd.Series, *, max_categories: int) -> dict:
    total = len(series)
    counts = _category_counts(series)
    n = int(counts.sum())
    other_extra = 0
    if OTHER in counts.index:  # a literal "__other__" value joins the other bucket
        other_extra = int(counts[OTHER])
        counts = counts.drop(OTHER)
    # most frequent first; ties broken by the key so the profile is deterministic
    frame = pd.DataFrame({"key": counts.index.to_numpy(dtype=object), "count": counts.to_numpy()})
    frame = frame.sort_values(["count", "key"], ascending=[False, True], kind="stable")
    top = frame.iloc[:max_categories]
    rest = int(frame["count"].iloc[max_categories:].sum()) + other_extra
    categories = {str(k): (int(c) / n if n else 0.0) for k, c in zip(top["key"], top["count"], strict=True)}
    categories[OTHER] = rest / n if n else 0.0
    return {
        "kind": "categorical",
        "n": n,
        "null_ratio": float(1 - n / total) if total else 0.0,
        "categories": categories,
    }


def build_profile(
    df: pd.DataFrame,
    features: Iterable[str],
    *,
    prediction: Any = None,
    bins: int = 10,
    sample_size: int = 5000,
    max_categories: int = 50,
    seed: int = 0,
) -> dict:
    """A compact, JSON-serialisable reference profile of ``features`` of ``df``.

    ``prediction`` (an array or Series of model outputs on the reference rows) is profiled
    as a numeric feature under the key ``"__prediction__"``. Raises ``ValueError`` for
    columns missing from ``df`` or bad parameters.
    """
    features = list(features)
    if bins < 2:
        raise ValueError("bins must be at least 2")
    if sample_size < 1 or max_categories < 1:
        raise ValueError("sample_size and max_categories must be positive")
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise ValueError(f"columns missing from the reference data: {', '.join(map(str, missing))}")
    out: dict[str, Any] = {}
    for name in features:
        series = df[name]
        if isinstance(series, pd.DataFrame):
            raise ValueError(f"duplicate column name: {name}")
        if _is_categorical(series):
            out[str(name)] = _categorical_profile(series, max_categories=max_categories)
        else:
            rng = np.random.default_rng(_feature_seed(seed, str(name)))
            out[str(name)] = _numeric_profile(series, bins=bins, sample_size=sample_size, rng=rng)
    if prediction is not None:
        rng = np.random.default_rng(_feature_seed(seed, PREDICTION_KEY))
        out[PREDICTION_KEY] = _numeric_profile(prediction, bins=bins, sample_size=sample_size, rng=rng)
    return {
        "version": PROFILE_VERSION,
        "bins": int(bins),
        "sample_size": int(sample_size),
        "n_rows": len(df),
        "features": out,
    }


# ---------------------------------------------------------------------------- statistics
#
# Every statistic is a sum over rows: PSI needs the counts per bin (numeric) or per category,
# KS the counts of current values below and at each point of the stored sample. So each one is
# an accumulator: ``add`` a chunk of rows at a time, ``finish`` once. A whole batch is one
# chunk (numeric_psi, categorical_psi, ks_against_sample, drift_report); a batch too big for
# memory is many (DriftStream). Counts are integers, so the result does not depend on how the
# rows were cut.

_ENTRY_ERRORS = (ValueError, TypeError, KeyError, IndexError)


def psi(ref_shares: Any, cur_shares: Any, eps: float = 1e-4) -> float:
    """Population stability index: ``sum((cur - ref) * ln(cur / ref))``.

    Shares (fractions per bin, each summing to 1) of the same bins; a share that is zero
    (an empty bin) is replaced by ``eps`` so the logarithm stays finite.
    """
    ref = np.asarray(ref_shares, dtype=np.float64)
    cur = np.asarray(cur_shares, dtype=np.float64)
    if ref.shape != cur.shape:
        raise ValueError(f"share vectors differ in length: {ref.size} vs {cur.size}")
    ref = np.where(ref <= 0, eps, ref)
    cur = np.where(cur <= 0, eps, cur)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


class _NumericPSI:
    """Counts of current values in a numeric profile entry's bins.

    A malformed entry is only reported at ``finish``, after "no non-null values", as the
    whole-batch functions always did."""

    def __init__(self, entry: Mapping[str, Any], eps: float = 1e-4):
        self.entry, self.eps, self.n = entry, eps, 0
        self.entry_error: Exception | None = None
        try:
            self.inner: np.ndarray | None = _inner_edges(entry)
        except _ENTRY_ERRORS as exc:
            self.inner, self.entry_error = None, exc
        self.counts = np.zeros(0 if self.inner is None else self.inner.size + 1, dtype=np.int64)

    def add(self, values: Any) -> None:
        x = _finite(_as_float(values))
        self.n += int(x.size)
        if self.inner is not None and x.size:
            self.counts += _bin_counts(x, self.inner)

    def finish(self) -> tuple[float, int]:
        if self.n == 0:
            raise ValueError("no non-null values")
        if self.entry_error is not None:
            raise self.entry_error
        return psi(self.entry["shares"], self.counts / self.n, self.eps), self.n


class _CategoricalPSI:
    """Counts of current values per category of a categorical profile entry (by ``str``
    form; the rest in ``"__other__"``): memory is the profile's categories, not the data's."""

    def __init__(self, entry: Mapping[str, Any], eps: float = 1e-4):
        self.eps, self.n = eps, 0
        self.entry_error: Exception | None = None
        self.keys: pd.Index | None = None
        try:
            categories = dict(entry["categories"])
            categories.setdefault(OTHER, 0.0)
            self.ref_shares = list(categories.values())
            self.keys = pd.Index(list(categories))
            self.other = self.keys.get_loc(OTHER)
        except _ENTRY_ERRORS as exc:
            self.keys, self.entry_error = None, exc
        self.counts = np.zeros(0 if self.keys is None else len(self.keys), dtype=np.int64)

    def add(self, values: Any) -> None:
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        counts = _category_counts(series)
        self.n += int(counts.sum())
        if self.keys is not None and len(counts):
            codes = self.keys.get_indexer(counts.index)
            codes[codes < 0] = self.other
            self.counts += np.bincount(codes, weights=counts.to_numpy(), minlength=len(self.keys)).astype(
                np.int64
            )  # float sums of integers below 2**53: exact

    def finish(self) -> tuple[float, int]:
        if self.n == 0:
            raise ValueError("no non-null values")
        if self.entry_error is not None:
            raise self.entry_error
        return psi(self.ref_shares, self.counts / self.n, self.eps), self.n


def numeric_psi(entry: Mapping[str, Any], values: Any, eps: float = 1e-4) -> tuple[float, int]:
    """(PSI, n_cur) of current values against a numeric profile entry's bins."""
    acc = _NumericPSI(entry, eps)
    acc.add(values)
    return acc.finish()


def categorical_psi(entry: Mapping[str, Any], values: Any, eps: float = 1e-4) -> tuple[float, int]:
    """(PSI, n_cur) of current values against a categorical profile entry.

    Current values are matched by their ``str`` form; categories the reference did not
    keep (unseen, or beyond its top ``max_categories``) count as ``"__other__"``.
    """
    acc = _CategoricalPSI(entry, eps)
    acc.add(values)
    return acc.finish()


_GRID_CELLS_PER_POINT = 16
_MAX_DENSE_SHARE = 0.6


def _cells(values: np.ndarray, lo: float, scale: float, cells: int) -> np.ndarray:
    c = (values - lo) * scale
    np.clip(c, 0, cells - 1, out=c)
    return c.astype(np.intp)


class _PointCounts:
    """(#x < u_j, #x <= u_j) for each point of sorted unique ``u``, without sorting ``x``.

    A uniform grid of ``16 * len(u)`` cells over ``[u[0], u[-1]]``: the cell function is
    monotone in floating point, so every point in a lower cell is below a value and every
    point in a higher cell above it; within a cell holding one point a single comparison
    places the value. Values in cells holding several points fall back to a binary
    search. About 3-4x faster than sorting a million values. When the points are too
    clustered for the grid to help (very heavy tails) each chunk is sorted instead.
    The grid is built once and used for every chunk.
    """

    def __init__(self, u: np.ndarray):
        self.u, k = u, int(u.size)
        self.k = k
        self.grid = False
        cells = _GRID_CELLS_PER_POINT * k
        lo = float(u[0])
        span = float(u[-1]) - lo
        scale = cells / span if span > 0 else 0.0
        if not math.isfinite(scale) or scale <= 0:
            return
        cu = _cells(u.copy(), lo, scale, cells)
        start = np.searchsorted(cu, np.arange(cells + 1), side="left")  # start[c] = #points in cells < c
        per_cell = np.diff(start)
        dense = per_cell > 1
        if per_cell[dense].sum() > _MAX_DENSE_SHARE * k:
            return
        self.grid = True
        self.lo, self.scale, self.cells = lo, scale, cells
        self.start, self.dense = start, dense if dense.any() else None
        self.u_pad = np.concatenate((u, [np.inf]))
        self.first = self.u_pad[start[:-1]]  # the cell's point, or (empty cell) the next point above it

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.grid:
            xs = np.sort(x)
            return np.searchsorted(xs, self.u, side="left"), np.searchsorted(xs, self.u, side="right")
        k = self.k
        below = np.zeros(k + 1, dtype=np.int64)  # values by #points < value
        upto = np.zeros(k + 1, dtype=np.int64)  # values by #points <= value
        f_buf, c_buf, i_buf, b_buf = _block_buffers()
        # Block by block into buffers reused across blocks, chunks and features: fresh arrays of
        # a chunk's size would cost page faults (~40 % of the time) and fall out of the cache.
        for begin in range(0, x.size, _BLOCK):
            xb = x[begin : begin + _BLOCK]
            m = xb.size
            f, c, idx, b = f_buf[:m], c_buf[:m], i_buf[:m], b_buf[:m]
            np.subtract(xb, self.lo, out=f)  # _cells, in place
            np.multiply(f, self.scale, out=f)
            np.clip(f, 0, self.cells - 1, out=f)
            np.copyto(c, f, casting="unsafe")
            np.take(self.start, c, out=idx, mode="clip")  # indices are in range: clip is not used
            np.take(self.first, c, out=f, mode="clip")
            np.less(f, xb, out=b)
            idx += b  # idx = #points < value, exact outside the dense cells
            if self.dense is not None:
                np.take(self.dense, c, out=b, mode="clip")
                rows = np.flatnonzero(b)
                if rows.size:
                    idx[rows] = np.searchsorted(self.u, xb[rows], side="left")
            below += np.bincount(idx, minlength=k + 1)
            np.take(self.u_pad, idx, out=f, mode="clip")
            np.equal(f, xb, out=b)
            idx += b  # now #points <= value
            upto += np.bincount(idx, minlength=k + 1)
        n_le = np.cumsum(below)[:k]  # value <= u_j  <=>  #points < value <= j
        n_lt = np.cumsum(upto)[:k]  # value < u_j  <=>  #points <= value <= j
        return n_lt, n_le


_BLOCK = 1 << 16
_buffers = threading.local()  # one set per thread (DriftStream's workers)


def _block_buffers() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not hasattr(_buffers, "arrays"):
        _buffers.arrays = (
            np.empty(_BLOCK, dtype=np.float64),
            np.empty(_BLOCK, dtype=np.intp),
            np.empty(_BLOCK, dtype=np.intp),
            np.empty(_BLOCK, dtype=bool),
        )
    return _buffers.arrays


class _NumericKS:
    """Two-sample KS of a stored reference sample against current values added in chunks.

    While at most ``_KS_EXACT_MAX_N`` current values have come, they are kept (copies) so
    that ``finish`` can call scipy's exact test as the whole-batch function does; past that,
    only the counts at the sample's points are kept and the buffer is dropped.
    """

    def __init__(self, sample: Any):
        self.n, self.m = 0, 0
        self.sample_error: Exception | None = None
        self.buffer: list[np.ndarray] | None = []
        try:
            self.s = np.sort(_finite(_as_float(sample)))
        except _ENTRY_ERRORS as exc:
            self.sample_error = exc
            return
        self.m = int(self.s.size)
        self.counts_at: _PointCounts | None = None  # built when first needed: small batches use scipy

    def _count(self, x: np.ndarray) -> None:
        if self.counts_at is None:
            # The sup of |F_s - F_c| is reached at a sample point, either at the point itself
            # (right-continuous ECDFs) or just before it (left limits); both are data points
            # of the pooled sample, which is where scipy evaluates the ECDFs.
            u = np.unique(self.s)
            self.fs_right = np.searchsorted(self.s, u, side="right") / self.m
            self.fs_left = np.searchsorted(self.s, u, side="left") / self.m
            self.counts_at = _PointCounts(u)
            self.n_lt = np.zeros(u.size, dtype=np.int64)
            self.n_le = np.zeros(u.size, dtype=np.int64)
        n_lt, n_le = self.counts_at(x)
        self.n_lt += n_lt
        self.n_le += n_le

    def _flush(self) -> None:
        if self.buffer:
            self._count(np.concatenate(self.buffer))
        self.buffer = None

    def add(self, values: Any) -> None:
        x = _finite(_as_float(values))
        if self.m == 0 or not x.size:
            self.n += int(x.size)
            return
        if self.buffer is not None and self.n + x.size <= _KS_EXACT_MAX_N:
            self.buffer.append(np.array(x, dtype=np.float64, copy=True))
        else:
            self._flush()
            self._count(x)
        self.n += int(x.size)

    def finish(self) -> tuple[float, float, int]:
        if self.sample_error is not None:
            raise self.sample_error
        m, n = self.m, self.n
        if m == 0:
            raise ValueError("no reference sample")
        if n == 0:
            raise ValueError("no non-null values")
        if self.buffer is not None and max(m, n) <= _KS_EXACT_MAX_N:
            res = stats.ks_2samp(self.s, np.concatenate(self.buffer))
            return float(res.statistic), float(res.pvalue), n
        self._flush()
        fc_left, fc_right = self.n_lt / n, self.n_le / n
        d = float(max(np.abs(self.fs_right - fc_right).max(), np.abs(self.fs_left - fc_left).max()))
        big, small = sorted([float(m), float(n)], reverse=True)
        en = big * small / (big + small)
        p = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))
        return d, p, n


def ks_against_sample(sample: Any, values: Any) -> tuple[float, float, int]:
    """Two-sample KS of a stored reference sample vs current values: (statistic, p_value, n_cur).

    Equal to ``scipy.stats.ks_2samp(sample, current)`` (two-sided, ``method="auto"``),
    where ``current`` is the finite values. For small inputs it simply calls scipy; for
    large ones (where scipy uses the asymptotic distribution) it computes the same
    statistic from the ECDFs at the sample points (counts of current values below and at
    each point), without scipy's pooled rank of both samples, and the same ``kstwo`` p-value.
    """
    acc = _NumericKS(sample)
    acc.add(values)
    return acc.finish()


# ---------------------------------------------------------------------------- report


def _empty_entry(kind: str | None, method: str, n_ref: int, n_cur: int, error: str) -> dict:
    entry: dict[str, Any] = {"kind": kind}
    if kind == "numeric" and method == "KS":
        entry.update(ks=None, p_value=None)
    else:
        entry["psi"] = None
    entry.update(n_ref=int(n_ref), n_cur=int(n_cur), drifted=False, error=error)
    return entry


def _error_text(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


class _Feature:
    """One feature's (or the prediction's) accumulator and the rules of its report entry."""

    def __init__(self, ref: Mapping[str, Any] | None, method: str, threshold: float):
        self.method, self.threshold = method, threshold
        self.seen = False  # a chunk had the column
        self.error: str | None = None
        self.acc: _NumericPSI | _CategoricalPSI | _NumericKS | None = None
        self.kind: str | None = None
        self.n_ref = 0
        if not isinstance(ref, Mapping) or ref.get("kind") not in ("numeric", "categorical"):
            return  # not in profile
        self.kind = ref["kind"]
        self.n_ref = int(ref.get("n") or 0)
        if self.n_ref == 0:
            return  # no reference values
        if self.kind == "categorical":
            self.acc = _CategoricalPSI(ref)
        elif method == "KS":
            self.acc = _NumericKS(ref.get("sample") or [])
        else:
            self.acc = _NumericPSI(ref)

    def add(self, values: Any) -> None:
        self.seen = True
        if self.acc is None or self.error is not None:
            return
        try:
            self.acc.add(values)
        except _ENTRY_ERRORS as exc:
            self.error = _error_text(exc)

    def entry(self) -> dict:
        kind, method, n_ref = self.kind, self.method, self.n_ref
        if kind is None:
            return _empty_entry(None, method, 0, 0, "not in profile")
        if not self.seen:
            return _empty_entry(kind, method, n_ref, 0, "missing column")
        if self.acc is None:
            return _empty_entry(kind, method, 0, 0, "no reference values")
        if self.error is not None:
            return _empty_entry(kind, method, n_ref, 0, self.error)
        try:
            if isinstance(self.acc, _NumericKS):
                stat, p_value, n_cur = self.acc.finish()
                return {
                    "kind": kind,
                    "ks": stat,
                    "p_value": p_value,
                    "n_ref": n_ref,
                    "n_cur": n_cur,
                    "drifted": bool(stat > self.threshold),
                }
            value, n_cur = self.acc.finish()
            return {
                "kind": kind,
                "psi": value,
                "n_ref": n_ref,
                "n_cur": n_cur,
                "drifted": bool(value > self.threshold),
            }
        except _ENTRY_ERRORS as exc:
            return _empty_entry(kind, method, n_ref, 0, _error_text(exc))


class DriftStream:
    """Feature drift of a batch read in chunks: ``add`` each chunk (a DataFrame of some of
    the batch's rows, all chunks with the same columns), then ``report``.

    The report is exactly ``drift_report`` of all the chunks concatenated (PSI and KS: the
    same counts, so the same floats), and memory holds the counts, not the rows: the
    profile's bins or categories, and for KS the counts at the stored sample's points (plus
    up to ``_KS_EXACT_MAX_N`` values per feature while the batch is that small, for scipy's
    exact test). A feature is "missing column" when no chunk had its column.

    ``workers > 1`` adds (and finishes) the features of a chunk in a thread pool.
    """

    def __init__(
        self,
        profile: Mapping[str, Any],
        *,
        method: str = "PSI",
        threshold: float = 0.2,
        features: Iterable[str] | None = None,
        workers: int = 1,
    ):
        method = str(method).upper()
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        self.method, self.threshold, self.workers = method, float(threshold), int(workers or 1)
        ref_features = profile.get("features") if isinstance(profile, Mapping) else None
        ref_features = ref_features if isinstance(ref_features, Mapping) else {}
        names = [str(f) for f in (features if features is not None else ref_features) if f != PREDICTION_KEY]
        self._features = {
            name: _Feature(ref_features.get(name), self.method, self.threshold)
            for name in dict.fromkeys(names)
        }
        self._prediction_ref = ref_features.get(PREDICTION_KEY)
        self.rows = 0

    def columns(self, available: Iterable[str]) -> list[str]:
        """Of a table's columns, the ones a chunk needs (the features the profile has): a
        reader reads only these."""
        available = set(available)
        return [name for name, f in self._features.items() if f.kind is not None and name in available]

    def _map(self, fn, items: list) -> list:
        if self.workers > 1 and len(items) > 1:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                return list(pool.map(fn, items))
        return [fn(item) for item in items]

    def add(self, chunk: pd.DataFrame) -> None:
        jobs = []
        for name, feature in self._features.items():
            if feature.kind is None or name not in chunk.columns:
                continue
            col = chunk[name]
            if isinstance(col, pd.DataFrame):  # duplicated column label: use the first
                col = col.iloc[:, 0]
            jobs.append((feature, col))
        self._map(lambda job: job[0].add(job[1]), jobs)
        self.rows += len(chunk)

    def report(self, prediction: Any = None) -> dict:
        """The drift_report shape (see there). ``prediction``: the model's outputs, on all the
        rows or on some of them (a check of a batch too big for memory predicts its first rows)."""
        entries = self._map(lambda feature: feature.entry(), list(self._features.values()))
        out_features = dict(zip(self._features, entries, strict=True))
        report: dict[str, Any] = {
            "method": self.method,
            "threshold": self.threshold,
            "features": out_features,
        }
        if prediction is not None:
            entry = _Feature(self._prediction_ref, self.method, self.threshold)
            entry.add(prediction)
            report["prediction"] = entry.entry()
        psis = [e["psi"] for e in out_features.values() if e.get("psi") is not None]
        kss = [e["ks"] for e in out_features.values() if e.get("ks") is not None]
        drifted = [name for name, e in out_features.items() if e["drifted"]]
        report["max_psi"] = max(psis) if psis else None
        report["max_ks"] = max(kss) if kss else None
        report["drifted_features"] = drifted
        report["drifted_count"] = len(drifted)
        return report


def drift_report(
    profile: Mapping[str, Any],
    current: pd.DataFrame,
    *,
    method: str = "PSI",
    threshold: float = 0.2,
    features: Iterable[str] | None = None,
    prediction: Any = None,
    workers: int = 1,
) -> dict:
    """Compare ``current`` (and optionally ``prediction``) against a stored profile.

    Returns (plain JSON types)::

        {"method": "PSI", "threshold": 0.2,
         "features": {"price": {"kind": "numeric", "psi": 0.31, "n_ref": 999000,
                                "n_cur": 10000, "drifted": true},
                      "region": {"kind": "categorical", "psi": 0.01, ...}},
         "prediction": {... same, only when a prediction is given ...},
         "max_psi": 0.31, "max_ks": null,
         "drifted_features": ["price"], "drifted_count": 1}

    * ``method="PSI"``: every feature gets ``psi``; drifted when ``psi > threshold``.
    * ``method="KS"``: numeric features get ``ks`` (the two-sample KS statistic D of the
      profile's stored sample vs the current values) and ``p_value``; drifted when
      ``ks > threshold`` -- the flag is on the statistic (an effect size, e.g. 0.1), not
      on the p-value, which is ~0 for any visible difference at production batch sizes.
      Categorical features always use PSI, with the same ``threshold``.
    * A feature missing from ``current`` gets ``"error": "missing column"`` (one not in
      the profile ``"not in profile"``, one with no usable values ``"no non-null
      values"``), its metric(s) ``None`` and ``drifted: false``; it never raises.
    * ``max_psi`` / ``max_ks`` / ``drifted_features`` / ``drifted_count`` cover the
      features, not the prediction (read ``prediction`` for that). ``max_*`` is ``None``
      when no feature has that metric.

    It is ``current`` as the one chunk of a :class:`DriftStream`: a batch read in chunks
    gets the same report.

    ``workers > 1`` checks the features in a thread pool (numpy releases the GIL in most
    of the work): about 1.7x faster for KS on two idle cores, but slower than one thread
    when the cores are already busy (GIL hand-offs), so the default is 1.
    """
    stream = DriftStream(
        profile,
        method=method,
        threshold=threshold,
        features=features,
        workers=workers,
    )
    stream.add(current)
    return stream.report(prediction)


# ---------------------------------------------------------------------------- demo data


def _reference_stats(name: str, ref: Any, series: pd.Series) -> dict:
    """kind, std and top category of ``name`` from a profile or a reference frame."""
    if isinstance(ref, pd.DataFrame):
        col = ref[name]
        if _is_categorical(col):
            counts = col.value_counts(dropna=True)
            return {"kind": "categorical", "top": counts.index[0] if len(counts) else None}
        x = _finite(_as_float(col))
        return {"kind": "numeric", "std": float(x.std(ddof=1)) if x.size > 1 else 0.0}
    entry = (ref or {}).get("features", {}).get(name)
    if not entry:
        raise KeyError(f"{name!r} is not in the reference profile")
    if entry["kind"] == "numeric":
        return {"kind": "numeric", "std": float(entry.get("std") or 0.0)}
    cats = {k: v for k, v in entry["categories"].items() if k != OTHER}
    top_key = max(cats, key=cats.get) if cats else None
    # map the profile's str key back to a value of the column's own type
    top: Any = top_key
    for value in pd.unique(series.dropna()):
        if str(value) == top_key:
            top = value
            break
    else:
        if pd.api.types.is_bool_dtype(series.dtype) and top_key in ("True", "False"):
            top = top_key == "True"
    return {"kind": "categorical", "top": top, "top_share": cats.get(top_key, 0.0) if top_key else 0.0}


def shift_batch(
    df: pd.DataFrame, shift: Mapping[str, float], profile_or_ref_df: Any, seed: int = 0
) -> pd.DataFrame:
    """A copy of ``df`` with synthetic drift, for demos and tests.

    * numeric feature ``f: k`` -- values moved by ``k`` reference standard deviations;
    * categorical feature ``f: k`` -- the reference's most frequent category made ``k``
      times as frequent as in the reference (share capped at 1; ``k=1`` leaves its share
      at the reference level, ``k=2`` doubles it): randomly chosen rows of the other
      categories are switched to it (or, for ``k < 1``, rows of it are switched to values
      drawn from the other rows).

    ``profile_or_ref_df`` is a profile from :func:`build_profile` or the reference frame.
    """
    rng = np.random.default_rng(seed)
    out = df.copy()
    for name, k in shift.items():
        k = float(k)
        series = out[name]
        info = _reference_stats(name, profile_or_ref_df, series)
        if info["kind"] == "numeric":
            shifted = _as_float(series) + k * info["std"]
            out[name] = (
                shifted.astype(series.dtype) if pd.api.types.is_integer_dtype(series.dtype) else shifted
            )
            continue
        top = info["top"]
        if top is None:
            continue
        if "top_share" not in info:  # reference frame given
            ref_col = profile_or_ref_df[name]
            info["top_share"] = float((ref_col == top).sum() / max(ref_col.notna().sum(), 1))
        values = series.to_numpy(dtype=object, copy=True)
        notnull = np.flatnonzero(pd.notna(values))
        try:
            is_top = (series == top).to_numpy(dtype=bool, na_value=False)[notnull]
        except (TypeError, ValueError):
            is_top = np.array([values[i] == top for i in notnull], dtype=bool)
        top_rows, other_rows = notnull[is_top], notnull[~is_top]
        target = int(round(min(1.0, k * info["top_share"]) * notnull.size))
        if target > top_rows.size and other_rows.size:
            pick = rng.choice(other_rows, size=min(target - top_rows.size, other_rows.size), replace=False)
            values[pick] = top
        elif target < top_rows.size and other_rows.size:
            pick = rng.choice(top_rows, size=top_rows.size - target, replace=False)
            values[pick] = values[rng.choice(other_rows, size=pick.size, replace=True)]
        if isinstance(series.dtype, pd.CategoricalDtype):
            cats = series.cat.categories
            new_cats = cats if top in cats else cats.append(pd.Index([top]))
            out[name] = pd.Categorical(values, categories=new_cats)
        else:
            try:
                out[name] = pd.Series(values, index=series.index).astype(series.dtype)
            except (TypeError, ValueError):
                out[name] = pd.Series(values, index=series.index)
    return out
