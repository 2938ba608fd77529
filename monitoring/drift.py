"""Reference profiles and drift checks (PSI and two-sample Kolmogorov-Smirnov).

Plain Python (numpy, pandas, scipy): no Django import, so it can be tested and
benchmarked alone (``bench/bench_drift.py`` imports this file by path).

Workflow
--------
1. At training/registration time, :func:`build_profile` summarises the reference data
   into a small JSON-serialisable dict (a few hundred KB at most: numeric features keep
   at most ``sample_size`` values each).
2. At monitoring time, :func:`drift_report` compares a current batch against that stored
   profile; the raw reference data is not needed any more.

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


def numeric_psi(entry: Mapping[str, Any], values: Any, eps: float = 1e-4) -> tuple[float, int]:
    """(PSI, n_cur) of current values against a numeric profile entry's bins."""
    x = _finite(_as_float(values))
    n = int(x.size)
    if n == 0:
        raise ValueError("no non-null values")
    shares = _bin_counts(x, _inner_edges(entry)) / n
    return psi(entry["shares"], shares, eps), n


def categorical_psi(entry: Mapping[str, Any], values: Any, eps: float = 1e-4) -> tuple[float, int]:
    """(PSI, n_cur) of current values against a categorical profile entry.

    Current values are matched by their ``str`` form; categories the reference did not
    keep (unseen, or beyond its top ``max_categories``) count as ``"__other__"``.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    counts = _category_counts(series)
    n = int(counts.sum())
    if n == 0:
        raise ValueError("no non-null values")
    categories = dict(entry["categories"])
    categories.setdefault(OTHER, 0.0)
    keys = pd.Index(list(categories))
    codes = keys.get_indexer(counts.index)
    other_code = keys.get_loc(OTHER)
    codes[codes < 0] = other_code
    cur = np.bincount(codes, weights=counts.to_numpy(dtype=np.float64), minlength=len(keys)) / n
    return psi(list(categories.values()), cur, eps), n


_GRID_CELLS_PER_POINT = 16
_MAX_DENSE_SHARE = 0.6


def _cells(values: np.ndarray, lo: float, scale: float, cells: int) -> np.ndarray:
    c = (values - lo) * scale
    np.clip(c, 0, cells - 1, out=c)
    return c.astype(np.intp)


def _counts_at(u: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(#x < u_j, #x <= u_j) for each point of sorted unique ``u``, without sorting ``x``.

    A uniform grid of ``16 * len(u)`` cells over ``[u[0], u[-1]]``: the cell function is
    monotone in floating point, so every point in a lower cell is below a value and every
    point in a higher cell above it; within a cell holding one point a single comparison
    places the value. Values in cells holding several points fall back to a binary
    search. About 3-4x faster than sorting a million values; returns ``None`` (the caller
    sorts) when the points are too clustered for the grid to help (very heavy tails).
    """
    k = int(u.size)
    cells = _GRID_CELLS_PER_POINT * k
    lo = float(u[0])
    span = float(u[-1]) - lo
    scale = cells / span if span > 0 else 0.0
    if not math.isfinite(scale) or scale <= 0:
        return None
    cu = _cells(u.copy(), lo, scale, cells)
    start = np.searchsorted(cu, np.arange(cells + 1), side="left")  # start[c] = #points in cells < c
    per_cell = np.diff(start)
    dense = per_cell > 1
    if per_cell[dense].sum() > _MAX_DENSE_SHARE * k:
        return None
    u_pad = np.concatenate((u, [np.inf]))
    first = u_pad[start[:-1]]  # the cell's point, or (empty cell) the next point above it
    c = _cells(x, lo, scale, cells)
    idx = start[c]
    idx += first[c] < x  # idx = #points < value, exact outside the dense cells
    if dense.any():
        rows = np.flatnonzero(dense[c])
        if rows.size:
            idx[rows] = np.searchsorted(u, x[rows], side="left")
    n_le = np.cumsum(np.bincount(idx, minlength=k + 1))[:k]  # value <= u_j  <=>  #points < value <= j
    idx += u_pad[idx] == x  # now #points <= value
    n_lt = np.cumsum(np.bincount(idx, minlength=k + 1))[:k]  # value < u_j  <=>  #points <= value <= j
    return n_lt, n_le


def ks_against_sample(sample: Any, values: Any) -> tuple[float, float, int]:
    """Two-sample KS of a stored reference sample vs current values: (statistic, p_value, n_cur).

    Equal to ``scipy.stats.ks_2samp(sample, current)`` (two-sided, ``method="auto"``),
    where ``current`` is the finite values. For small inputs it simply calls scipy; for
    large ones (where scipy uses the asymptotic distribution) it computes the same
    statistic from one sort of the current values and the ECDFs at the sample points,
    without scipy's pooled rank of both samples, and the same ``kstwo`` p-value.
    """
    s = np.sort(_finite(_as_float(sample)))
    x = _finite(_as_float(values))
    m, n = int(s.size), int(x.size)
    if m == 0:
        raise ValueError("no reference sample")
    if n == 0:
        raise ValueError("no non-null values")
    if max(m, n) <= _KS_EXACT_MAX_N:
        res = stats.ks_2samp(s, x)
        return float(res.statistic), float(res.pvalue), n
    # The sup of |F_s - F_c| is reached at a sample point, either at the point itself
    # (right-continuous ECDFs) or just before it (left limits); both are data points
    # of the pooled sample, which is where scipy evaluates the ECDFs.
    u = np.unique(s)
    fs_right = np.searchsorted(s, u, side="right") / m
    fs_left = np.searchsorted(s, u, side="left") / m
    counts = _counts_at(u, x)
    if counts is None:
        xs = np.sort(x)
        counts = np.searchsorted(xs, u, side="left"), np.searchsorted(xs, u, side="right")
    fc_left, fc_right = counts[0] / n, counts[1] / n
    d = float(max(np.abs(fs_right - fc_right).max(), np.abs(fs_left - fc_left).max()))
    big, small = sorted([float(m), float(n)], reverse=True)
    en = big * small / (big + small)
    p = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))
    return d, p, n


# ---------------------------------------------------------------------------- report


def _empty_entry(kind: str | None, method: str, n_ref: int, n_cur: int, error: str) -> dict:
    entry: dict[str, Any] = {"kind": kind}
    if kind == "numeric" and method == "KS":
        entry.update(ks=None, p_value=None)
    else:
        entry["psi"] = None
    entry.update(n_ref=int(n_ref), n_cur=int(n_cur), drifted=False, error=error)
    return entry


def _check_feature(ref: Mapping[str, Any] | None, values: Any, method: str, threshold: float) -> dict:
    if not isinstance(ref, Mapping) or ref.get("kind") not in ("numeric", "categorical"):
        return _empty_entry(None, method, 0, 0, "not in profile")
    kind = ref["kind"]
    n_ref = int(ref.get("n") or 0)
    if values is None:
        return _empty_entry(kind, method, n_ref, 0, "missing column")
    if n_ref == 0:
        return _empty_entry(kind, method, 0, 0, "no reference values")
    try:
        if kind == "categorical":
            value, n_cur = categorical_psi(ref, values)
            return {
                "kind": kind,
                "psi": value,
                "n_ref": n_ref,
                "n_cur": n_cur,
                "drifted": bool(value > threshold),
            }
        if method == "KS":
            stat, p_value, n_cur = ks_against_sample(ref.get("sample") or [], values)
            return {
                "kind": kind,
                "ks": stat,
                "p_value": p_value,
                "n_ref": n_ref,
                "n_cur": n_cur,
                "drifted": bool(stat > threshold),
            }
        value, n_cur = numeric_psi(ref, values)
        return {
            "kind": kind,
            "psi": value,
            "n_ref": n_ref,
            "n_cur": n_cur,
            "drifted": bool(value > threshold),
        }
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        return _empty_entry(kind, method, n_ref, 0, str(exc) or type(exc).__name__)


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

    ``workers > 1`` checks the features in a thread pool (numpy releases the GIL in most
    of the work): about 1.7x faster for KS on two idle cores, but slower than one thread
    when the cores are already busy (GIL hand-offs), so the default is 1.
    """
    method = str(method).upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    threshold = float(threshold)
    ref_features = profile.get("features") if isinstance(profile, Mapping) else None
    ref_features = ref_features if isinstance(ref_features, Mapping) else {}
    names = [str(f) for f in (features if features is not None else ref_features) if f != PREDICTION_KEY]

    jobs: list[tuple[str, Any, Any]] = []
    for name in dict.fromkeys(names):
        col = current[name] if name in current.columns else None
        if isinstance(col, pd.DataFrame):  # duplicated column label: use the first
            col = col.iloc[:, 0]
        jobs.append((name, ref_features.get(name), col))
    if prediction is not None:
        jobs.append((PREDICTION_KEY, ref_features.get(PREDICTION_KEY), prediction))

    if workers and workers > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda job: _check_feature(job[1], job[2], method, threshold), jobs))
    else:
        results = [_check_feature(ref, col, method, threshold) for _, ref, col in jobs]

    out_features: dict[str, dict] = {}
    report: dict[str, Any] = {"method": method, "threshold": threshold, "features": out_features}
    for (name, _, _), entry in zip(jobs, results, strict=True):
        if name == PREDICTION_KEY:
            report["prediction"] = entry
        else:
            out_features[name] = entry
    psis = [e["psi"] for e in out_features.values() if e.get("psi") is not None]
    kss = [e["ks"] for e in out_features.values() if e.get("ks") is not None]
    drifted = [name for name, e in out_features.items() if e["drifted"]]
    report["max_psi"] = max(psis) if psis else None
    report["max_ks"] = max(kss) if kss else None
    report["drifted_features"] = drifted
    report["drifted_count"] = len(drifted)
    return report


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
