"""Per-row attributions: exact interventional Shapley values by enumerating coalitions, a
seeded permutation-sampling estimate when there are too many features, and TreeSHAP for
LightGBM models. Plain numpy/pandas, no Django.

Interventional Shapley values against a background sample ``Z`` (B rows): the value of a
coalition ``S`` of features for a row ``x`` is ``v(S) = mean_z f(x_S, z_rest)``: the model's
output on *hybrid* rows that take the features in ``S`` from ``x`` and the others from a
background row. With every coalition enumerated (``2^d`` of them) the Shapley values

    phi_j = sum_{S without j} |S|! (d - |S| - 1)! / d! * (v(S + j) - v(S))

are exact for that background and add up: ``f(x) - mean_z f(z) = sum_j phi_j``
(``v(all) = f(x)``, ``v(empty) = mean_z f(z)``, the base value). All hybrid rows of a chunk
of rows are built at once and the model is asked once for them.

With more than ``MAX_EXACT_FEATURES`` features the values are estimated from random
feature orders (seeded), each walked against every background row: every walk's marginal
contributions add up to ``f(x) - f(z)``, so the estimate still adds up exactly; each value
is approximate.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

MAX_EXACT_FEATURES = 12
# Hybrid rows per explained row, at most (2^d x B for the exact method: B is cut to fit).
MAX_HYBRIDS_PER_ROW = 4096
# Hybrid rows per model call, about (rows of a chunk x hybrids per row).
CHUNK_HYBRIDS = 65_536


def background_size(d: int, requested: int) -> int:
    """How many background rows the exact method uses for ``d`` features: the requested
    number, cut so that ``2^d x B <= MAX_HYBRIDS_PER_ROW`` (at least 1)."""
    if d > MAX_EXACT_FEATURES:
        return max(1, int(requested))
    return max(1, min(int(requested), MAX_HYBRIDS_PER_ROW // (2**d)))


def _columns_of(groups: dict[str, list[str]], features: list[str]) -> list[list[str]]:
    return [groups[f] for f in features]


def _hybrids(
    rows: pd.DataFrame,
    background: pd.DataFrame,
    groups: list[list[str]],
    take_x: np.ndarray,
    row_of: np.ndarray,
    bg_of: np.ndarray,
) -> pd.DataFrame:
    """Hybrid rows: hybrid ``h`` takes feature ``j``'s columns from ``rows[row_of[h]]`` if
    ``take_x[h, j]`` else from ``background[bg_of[h]]``; columns of no feature from the row.
    Built on numpy arrays (text as Python strings): the families read text columns as text
    whatever their dtype, and numpy takes are many times faster than Arrow-backed ones."""
    out = {}
    owner = {c: j for j, cols in enumerate(groups) for c in cols}
    for col in rows.columns:
        x = _array(rows[col])
        j = owner.get(col)
        if j is None:
            out[col] = x[row_of]
            continue
        z = _array(background[col])
        if x.dtype != z.dtype and (x.dtype.kind == "O" or z.dtype.kind == "O"):
            x, z = x.astype(object), z.astype(object)
        out[col] = np.where(take_x[:, j], x[row_of], z[bg_of])
    return pd.DataFrame(out)


def _array(column: pd.Series) -> np.ndarray:
    """A column as a numpy array: numbers and timestamps as they are, anything else (text,
    Arrow strings, categories) as Python objects with NaN for a missing value."""
    if pd.api.types.is_bool_dtype(column.dtype) or not (
        pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_datetime64_any_dtype(column.dtype)
    ):
        return column.to_numpy(dtype=object, na_value=np.nan)
    if isinstance(column.dtype, pd.api.extensions.ExtensionDtype) and not isinstance(
        column.dtype, pd.DatetimeTZDtype
    ):
        return column.to_numpy(dtype=float, na_value=np.nan)  # nullable Int64/Float64
    return column.to_numpy()


def _unique_output(output, frame: pd.DataFrame) -> np.ndarray:
    """``output(frame)``, asking the model once per distinct row: many hybrid rows coincide
    (a coalition with or without a feature on which the row and the background row agree,
    the full coalition once per background row), and a row's output depends on it alone.
    Rows are told apart by a 64-bit hash of their values (a collision among a chunk's 65,536
    rows has a chance of about 1e-10)."""
    keys = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(unique) > 0.9 * len(frame):
        return np.asarray(output(frame), dtype=float)
    values = np.asarray(output(frame.iloc[first].reset_index(drop=True)), dtype=float)
    return values[inverse]


def _weights(d: int) -> np.ndarray:
    """Shapley weight of a coalition of each size s without the feature: s!(d-s-1)!/d!."""
    return np.array([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)])


def _map(function, items: list, threads: int) -> list:
    """``function`` over ``items``, in ``threads`` threads when more than one (the families'
    predict spends its time in LightGBM or numpy, which release the GIL)."""
    if threads > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(function, items))
    return [function(item) for item in items]


def exact(
    output,
    rows: pd.DataFrame,
    background: pd.DataFrame,
    groups: dict[str, list[str]],
    features: list[str],
    *,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact interventional Shapley values of ``output`` (callable frame -> array).

    Returns ``(phi (n, d), f(x) (n,), base (n,))`` with ``base = v(empty) = mean_z f(z)`` (the
    same for every row when the model reads only the features)."""
    d = len(features)
    n, b = len(rows), len(background)
    if b == 0:
        raise ValueError("exact Shapley values need background rows")
    rows = rows.reset_index(drop=True)
    background = background.reset_index(drop=True)
    masks = np.arange(2**d)
    bits = ((masks[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)  # (2^d, d)
    per_row = len(masks) * b
    chunk = max(1, CHUNK_HYBRIDS // per_row)
    cols = _columns_of(groups, features)
    values = np.empty((n, len(masks)))

    def chunk_values(start: int) -> np.ndarray:
        part = rows.iloc[start : start + chunk].reset_index(drop=True)
        m = len(part)
        # hybrid order: row, mask, background row
        row_of = np.repeat(np.arange(m), per_row)
        mask_of = np.tile(np.repeat(masks, b), m)
        bg_of = np.tile(np.arange(b), m * len(masks))
        frame = _hybrids(part, background, cols, bits[mask_of], row_of, bg_of)
        return _unique_output(output, frame).reshape(m, len(masks), b).mean(axis=2)

    starts = list(range(0, n, chunk))
    for start, v in zip(starts, _map(chunk_values, starts, threads), strict=True):
        values[start : start + len(v)] = v
    size = bits.sum(axis=1)
    w = _weights(d)
    phi = np.zeros((n, d))
    for j in range(d):
        without = masks[~bits[:, j]]
        phi[:, j] = ((values[:, without | (1 << j)] - values[:, without]) * w[size[without]]).sum(axis=1)
    return phi, values[:, -1], values[:, 0].copy()


def sampled(
    output,
    rows: pd.DataFrame,
    background: pd.DataFrame,
    groups: dict[str, list[str]],
    features: list[str],
    *,
    seed: int = 0,
    max_hybrids: int = MAX_HYBRIDS_PER_ROW,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Permutation-sampling estimate of the interventional Shapley values (seeded): ``P``
    random feature orders per row, each walked against every background row (so
    ``sum_j phi_j = f(x) - mean_z f(z)`` exactly). Returns ``(phi, f(x), base (n,), P)``."""
    d = len(features)
    n, b = len(rows), len(background)
    if b == 0:
        raise ValueError("Shapley values need background rows")
    rows = rows.reset_index(drop=True)
    background = background.reset_index(drop=True)
    perms = max(1, max_hybrids // ((d + 1) * b))
    rng = np.random.default_rng(seed)
    cols = _columns_of(groups, features)
    phi = np.zeros((n, d))
    fx = np.empty(n)
    base = np.empty(n)
    steps = d + 1
    per_row = perms * steps * b
    chunk = max(1, CHUNK_HYBRIDS // per_row)
    for start in range(0, n, chunk):
        part = rows.iloc[start : start + chunk].reset_index(drop=True)
        m = len(part)
        orders = np.stack(
            [np.stack([rng.permutation(d) for _ in range(perms)]) for _ in range(m)]
        )  # (m, P, d)
        # step k of a walk takes the first k features of its order from x
        rank = np.argsort(orders, axis=2)  # rank[i, p, j]: position of feature j in order p
        k = np.arange(steps)
        take = rank[:, :, None, :] < k[None, None, :, None]  # (m, P, steps, d)
        take = np.broadcast_to(take[:, :, :, None, :], (m, perms, steps, b, d)).reshape(-1, d)
        row_of = np.repeat(np.arange(m), perms * steps * b)
        bg_of = np.tile(np.arange(b), m * perms * steps)
        frame = _hybrids(part, background, cols, take, row_of, bg_of)
        f = _unique_output(output, frame).reshape(m, perms, steps, b)
        gain = np.diff(f, axis=2)  # (m, P, d, b): the gain of the step's added feature
        added = orders  # the feature added at step k+1 is orders[..., k]
        contrib = np.zeros((m, perms, d))
        np.put_along_axis(contrib, added, gain.mean(axis=3), axis=2)
        phi[start : start + m] = contrib.mean(axis=1)
        fx[start : start + m] = f[:, 0, -1, :].mean(axis=1)
        base[start : start + m] = f[:, 0, 0, :].mean(axis=1)
    return phi, fx, base, perms


def attributions(
    adapter, rows: pd.DataFrame, background: pd.DataFrame | None, *, seed: int = 0, threads: int = 1
) -> dict:
    """Per-row attributions of ``rows`` by the adapter's method.

    Returns ``{"method", "phi" (n, d), "output" (n,), "base" (n,), "background_rows",
    "note"}``; ``method`` is ``tree_shap``, ``exact_shapley`` or ``sampled_shapley``."""
    features = adapter.features
    if adapter.method == "tree_shap":
        phi, base = adapter.tree(rows)
        return {
            "method": "tree_shap",
            "phi": phi,
            "output": np.asarray(adapter.output(rows), dtype=float),
            "base": base,
            "background_rows": 0,
            "note": "",
        }
    if background is None or len(background) == 0:
        raise ValueError("this model's explanations need background rows (none were given)")
    d = len(features)
    if adapter.max_background:
        background = background.iloc[: adapter.max_background]
    if d <= MAX_EXACT_FEATURES:
        bg = background.iloc[: background_size(d, len(background))]
        phi, fx, base = exact(adapter.output, rows, bg, adapter.groups, features, threads=threads)
        return {
            "method": "exact_shapley",
            "phi": phi,
            "output": fx,
            "base": base,
            "background_rows": len(bg),
            "note": "",
        }
    phi, fx, base, perms = sampled(adapter.output, rows, background, adapter.groups, features, seed=seed)
    return {
        "method": "sampled_shapley",
        "phi": phi,
        "output": fx,
        "base": base,
        "background_rows": len(background),
        "note": (
            f"{d} features are too many to enumerate every coalition: the Shapley values are "
            f"estimated from {perms} random feature orders per row (seed {seed}); they add up "
            "exactly to the output minus the base value, each one is approximate"
        ),
    }
