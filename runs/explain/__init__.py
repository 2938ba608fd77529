"""Explanations of a trained model: why it predicts what it predicts, globally, per prediction
and in its family's terms (issue #17). Plain numpy/pandas/LightGBM, no Django, no ``shap``.

``explain_model`` (the pipeline's ``explain`` stage) explains a held-out sample of a train
run: per-prediction attributions (exact TreeSHAP for the LightGBM location model, exact
interventional Shapley values by enumeration for the others, ``runs.explain.shapley``),
permutation importance on the family's metric with intervals (``importance``), partial
dependence and ICE curves (``dependence``), and the family's view (``family_views``). It
returns the document served as explanations.json, the explained rows with their
contributions and the background rows later explanations need.

``explain_rows`` explains request rows (``POST /models/{id}/predict`` with ``explain``),
``attribution_means`` gives a batch's mean |contribution| per feature and
``attribution_drift`` compares two of those (monitoring). The features, scale and method of
each family are in ``runs.explain.adapters``.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
import pandas as pd

from recipes.explain_config import resolve

from ..jsonsafe import json_safe
from . import adapters, decomposition, dependence, family_views, importance, reasons, shapley

__all__ = [
    "Explanation",
    "attribution_drift",
    "attribution_means",
    "explain_model",
    "explain_rows",
]

VERSION = 1
# Per-prediction attributions in explain_model cost hybrid rows (exact Shapley: 2^d x B per
# explained row), each weighted by the model's cost of one row (adapters.Adapter.row_cost).
# Rows past this budget are left out of the attributions (the document says how many were
# explained), so the stage stays within a few seconds at the baseline sizes on one thread.
SHAP_BUDGET = 1_000_000
MIN_SHAP_ROWS = 20
# attribution_means explains at most this many rows of a batch (a seeded sample).
MEANS_MAX_ROWS = 500


class Explanation(NamedTuple):
    document: dict
    contributions: pd.DataFrame
    background: pd.DataFrame


def _noop(_message: str) -> None:
    return None


def _method_note(adapter, method: str, model, background_rows: int, seed: int) -> str:
    d = len(adapter.features)
    if method == "tree_shap":
        meta = getattr(model, "meta", {}) or {}
        if adapter.log_scale:
            how = (
                f"on the booster's raw output, {adapter.scale} before the bias correction "
                f"(prediction = {float(meta.get('target_scale', 1.0)):.4f} × exp(output) − 1)"
            )
        else:
            how = "on the booster's output (the prediction)"
        return (
            f"Exact TreeSHAP (LightGBM pred_contrib) {how}; one-hot columns summed back to their "
            "feature. Contributions add up to the output exactly; the base value is the model's "
            "expected output over its training data (the background rows only give the reasons' "
            "typical values)."
        )
    if method == "exact_shapley":
        return (
            f"Exact interventional Shapley values: all {2**d} coalitions of the {d} features "
            f"enumerated against {background_rows} background rows. Contributions add up exactly "
            "to the output minus the base value (the mean output on the background rows)."
        )
    return (
        f"Interventional Shapley values estimated from random feature orders (seed {seed}) "
        f"against {background_rows} background rows: approximate for each feature, though they "
        "add up exactly to the output minus the base value."
    )


def _usable(family, model, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows the model can explain: a forecaster only knows its own series."""
    if family.NAME != "forecasting" or len(frame) == 0:
        return frame
    keys = adapters._series_key(frame, model["spec"]["series_columns"])
    known = pd.Index(model["series"], dtype=object).get_indexer(pd.Index(keys, dtype=object)) >= 0
    return frame[known]


def _background(adapter, family, model, train, test, inputs, size: int, seed: int) -> pd.DataFrame:
    """The background rows: a seeded sample of the training rows (a forecaster's of its
    holdout: it only forecasts after its history)."""
    source = test if family.NAME == "forecasting" else train
    source = _usable(family, model, source)
    if adapter.method != "tree_shap" and len(adapter.features) <= shapley.MAX_EXACT_FEATURES:
        size = shapley.background_size(len(adapter.features), size)
    size = min(size, adapter.max_background or size, len(source))
    rows = source.sample(n=size, random_state=seed + 1) if size < len(source) else source
    return rows[inputs].reset_index(drop=True)


def _mean_abs(features: list[str], phi: np.ndarray) -> list[dict]:
    values = np.abs(phi).mean(axis=0) if len(phi) else np.zeros(len(features))
    total = float(values.sum())
    out = [
        {"feature": f, "mean_abs": float(v), "share": float(v / total) if total > 0 else 0.0}
        for f, v in zip(features, values, strict=True)
    ]
    out.sort(key=lambda e: (-e["mean_abs"], e["feature"]))
    return out


def explain_model(family, model, train, test, manifest, config, *, log=_noop, threads=1) -> Explanation:
    """Explain a fitted model on a held-out sample of its train run (see the module doc and
    the contract in the issue). ``config`` is the explain stage's config (resolved here
    again, which changes nothing for a resolved one). ``threads`` > 1 asks the model for
    chunks of hybrid rows in that many threads."""
    started = time.monotonic()
    cfg = resolve(config, family.NAME)
    seed = int(cfg["seed"])
    methods = list(cfg["methods"])
    notes: list[str] = []
    inputs = adapters.input_columns(family, manifest, test)
    usable = _usable(family, model, test)
    if len(usable) < len(test):
        notes.append(
            f"{len(test) - len(usable)} holdout rows of series the model was not trained on were left out"
        )
    if usable.empty:
        raise ValueError("no holdout rows to explain")
    n = min(len(usable), int(cfg["sample_size"]))
    sample = usable.sample(n=n, random_state=seed) if n < len(usable) else usable
    sample = sample.reset_index(drop=True)
    features_frame = sample[inputs]
    adapter = adapters.make_adapter(family, model, features_frame)
    background = _background(adapter, family, model, train, test, inputs, int(cfg["background_size"]), seed)
    if adapter.max_background and adapter.max_background < int(cfg["background_size"]):
        notes.append(adapter.background_note)
    log(f"explain: {n} holdout rows, features {adapter.features}, {len(background)} background rows")

    # --- per-prediction attributions
    method, method_note, phi, output, base = None, "", None, None, None
    explained = features_frame
    if "shap" in methods:
        per_row = adapter.hybrids_per_row(len(background)) * adapter.row_cost
        k = n if per_row == 0 else min(n, max(MIN_SHAP_ROWS, int(SHAP_BUDGET // per_row)))
        explained = features_frame.iloc[:k]
        t0 = time.monotonic()
        att = shapley.attributions(adapter, explained, background, seed=seed, threads=threads)
        method, phi, output, base = att["method"], att["phi"], att["output"], att["base"]
        method_note = _method_note(adapter, method, model, att["background_rows"], seed)
        if att["note"]:
            notes.append(att["note"])
        if k < n:
            notes.append(
                f"per-prediction contributions were computed for {k} of the {n} sample rows "
                "(the attribution budget); permutation importance uses all of them"
            )
        log(f"explain: {method} contributions of {k} rows in {time.monotonic() - t0:.2f}s")
    mean_abs = _mean_abs(adapter.features, phi) if phi is not None else None

    # --- permutation importance
    global_, permutation = None, None
    if "permutation" in methods:
        t0 = time.monotonic()
        metric = cfg["metric"] or importance.default_metric(family.NAME)
        direction = importance.direction_of(family.NAME, metric)
        score = importance.scorer(family, model, manifest, metric)
        global_, baseline = importance.permutation_importance(
            score,
            sample,
            adapter.groups,
            adapter.features,
            direction=direction,
            repeats=int(cfg["repeats"]),
            seed=seed,
        )
        permutation = {
            "metric": metric,
            "direction": direction,
            "baseline": baseline,
            "repeats": int(cfg["repeats"]),
        }
        if family.NAME == "forecasting":
            notes.append(
                "forecasting permutation importance scores the sample rows with one predict call "
                "(periods of a series without a row use its median regressors), so its baseline "
                "differs from the evaluation's metric on the whole holdout"
            )
        log(f"explain: permutation importance ({metric}) in {time.monotonic() - t0:.2f}s")

    # --- dependence
    dep = None
    if "dependence" in methods:
        t0 = time.monotonic()
        if global_ is not None:
            order = [e["feature"] for e in global_]
        elif mean_abs is not None:
            order = [e["feature"] for e in mean_abs]
        else:
            order = list(adapter.features)
        dep = dependence.dependence(adapter, features_frame, order, cfg)
        log(f"explain: dependence curves in {time.monotonic() - t0:.2f}s")

    # --- the family's view
    view, view_notes = _family_view(family, model, sample, adapter, mean_abs, explained, phi, output, base)
    notes.extend(view_notes)
    if family.NAME == "forecasting":
        t0 = time.monotonic()
        view["decomposition"] = _decomposition(model, usable, adapter, background, cfg, "shap" in methods)
        if view["decomposition"] is not None:
            log(
                f"explain: {view['decomposition']['method']} decomposition of "
                f"{len(view['decomposition']['series'])} series in {time.monotonic() - t0:.2f}s"
            )

    # --- the explained rows
    contributions = explained.reset_index(drop=True).copy()
    if phi is not None:
        contributions["base_value"] = base
        contributions["output"] = output
        for j, f in enumerate(adapter.features):
            contributions[f"contrib.{f}"] = phi[:, j]
    else:
        contributions["base_value"] = np.nan
        contributions["output"] = np.asarray(adapter.output(contributions[inputs]), dtype=float)

    document = {
        "version": VERSION,
        "family": family.NAME,
        "model_algorithm": adapter.model_algorithm,
        "method": method,
        "method_note": method_note or None,
        "scale": adapter.scale,
        "output_label": adapter.output_label,
        "base_value": float(np.mean(base)) if base is not None and len(base) else None,
        "sample_rows": int(n),
        "background_rows": int(len(background)),
        "seed": seed,
        "global": global_,
        "permutation": permutation,
        "attribution": {"mean_abs": mean_abs} if mean_abs is not None else None,
        "dependence": dep,
        "family_view": view,
        "methods": [m for m in ("shap", "permutation", "dependence") if m in methods],
        "notes": notes,
    }
    log(f"explain: done in {time.monotonic() - started:.2f}s")
    return Explanation(json_safe(document), contributions, background)


def _family_view(family, model, sample, adapter, mean_abs, explained, phi, output, base):
    name = family.NAME
    if name == "pricing":
        return family_views.pricing_view(family, model, sample, mean_abs)
    if name == "next_best_action":
        return family_views.nba_view(family, model, sample, mean_abs)
    if name == "location_scoring":
        rows = explained.iloc[: family_views.SITES]
        if phi is None:  # TreeSHAP of the shown sites only (cheap)
            sphi, sbase = adapter.tree(rows)
            sout = np.asarray(adapter.output(rows), dtype=float)
        else:
            sphi, sbase, sout = phi[: len(rows)], base[: len(rows)], output[: len(rows)]
        base_value = float(np.mean(sbase)) if len(sbase) else math.nan
        return family_views.location_view(
            model, rows, sphi, sout, base_value, adapter.features, getattr(family, "GRAIN", "site_id")
        )
    if name == "forecasting":
        return family_views.forecasting_view(model, mean_abs)
    return {"kind": name}, []


def _decomposition(model, usable, adapter, background, cfg, shap: bool) -> dict | None:
    """A forecaster's decomposition per series (``runs.explain.decomposition``): Prophet's own
    components, else the Shapley contributions of each series' held-out rows by kind of
    feature (when the stage computes Shapley values: ``methods`` with ``shap``), for the
    ``decomposition_series`` series of most held-out volume, within the attribution budget."""
    spec = model["spec"]
    keys = adapters._series_key(usable, spec["series_columns"])
    label = spec.get("label")
    if label in usable.columns:
        volume = pd.to_numeric(usable[label], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    else:
        volume = np.ones(len(usable))
    n = int(cfg["decomposition_series"])
    out = decomposition.prophet_groups(model, pd.Series(volume).groupby(keys).sum().to_dict(), series=n)
    if out is None:
        if not shap or background is None or len(background) == 0:
            return None
        per_row = adapter.hybrids_per_row(len(background)) * adapter.row_cost
        rows = max(n, int(SHAP_BUDGET // per_row)) if per_row else n * decomposition.PERIODS
        out = decomposition.shapley_groups(
            adapter,
            usable[list(background.columns)].reset_index(drop=True),
            keys,
            volume,
            background,
            time_col=spec["time_column"],
            series=n,
            # the budget's rows shared by the series there are (a model may have fewer than n)
            periods=max(1, min(decomposition.PERIODS, rows // max(1, min(n, len(set(keys)))))),
            seed=int(cfg["seed"]),
            interval=decomposition.interval_ratios(model),
        )
    out["interval_level"] = (model.get("interval") or {}).get("level")
    out["method_note"] = decomposition.method_note(out, str(model["algorithm"]))
    out["series_total"] = len(model["series"])
    return out


def _align(
    rows: pd.DataFrame, background: pd.DataFrame | None, adapter
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The rows with the background's columns (the model's input columns), and the background
    (None or empty only for TreeSHAP); ValueError naming what is missing."""
    if background is None or len(background) == 0:
        if adapter.needs_background:
            raise ValueError("this model has no explanation background rows (train it again to explain it)")
        return rows, background
    missing = [c for c in background.columns if c not in rows.columns]
    if missing:
        raise ValueError(f"the rows lack the model's input column(s) {missing}")
    return rows[list(background.columns)].reset_index(drop=True), background


def explain_rows(
    family, model, rows: pd.DataFrame, background: pd.DataFrame | None, *, document=None, top=3
) -> list[dict]:
    """Per-prediction explanations of ``rows`` (the model's input columns, typed as
    ``runs.artifacts.rows_frame`` gives them): one dict per row (see the contract)."""
    if len(rows) == 0:
        return []
    rows = rows.reset_index(drop=True)
    adapter = adapters.make_adapter(family, model, rows)
    rows, background = _align(rows, background, adapter)
    seed = int((document or {}).get("seed") or 0)
    att = shapley.attributions(adapter, rows, background, seed=seed)
    typical = reasons.typical_values(
        adapter, background if background is not None and len(background) else rows
    )
    out = []
    for i in range(len(rows)):
        contrib = {f: float(att["phi"][i, j]) for j, f in enumerate(adapter.features)}
        item = {
            "method": att["method"],
            "scale": adapter.scale,
            "output": float(att["output"][i]),
            "base_value": float(att["base"][i]),
            "contributions": contrib,
            "reasons": reasons.reasons(adapter, rows.iloc[i], contrib, typical, top=top),
        }
        if family.NAME == "pricing":
            item.update(family_views.pricing_row_extras(family, model, rows.iloc[[i]]))
        out.append(item)
    return out


def attribution_means(
    family, model, rows: pd.DataFrame, background: pd.DataFrame | None, *, max_rows: int = MEANS_MAX_ROWS
) -> dict[str, float]:
    """Mean |contribution| per feature over ``rows`` (at most ``max_rows`` of them, a seeded
    sample), what monitoring compares with the training document's ``attribution.mean_abs``."""
    rows = _usable(family, model, rows)
    if len(rows) == 0:
        return {}
    if len(rows) > max_rows:
        rows = rows.sample(n=max_rows, random_state=0)
    rows = rows.reset_index(drop=True)
    adapter = adapters.make_adapter(family, model, rows)
    rows, background = _align(rows, background, adapter)
    att = shapley.attributions(adapter, rows, background)
    return {e["feature"]: e["mean_abs"] for e in _mean_abs(adapter.features, att["phi"])}


def _ranks(means: dict[str, float]) -> dict[str, int]:
    ordered = sorted(means, key=lambda f: (-float(means[f]), f))
    return {f: i for i, f in enumerate(ordered)}


def attribution_drift(reference: dict[str, float], current: dict[str, float]) -> dict[str, float]:
    """``{"explain.rank_change": ..., "explain.<feature>.share": ...}``: the mean absolute
    change of rank position over the reference's features (0 = the same order; a feature
    missing from ``current`` ranks last), and each feature's share of the current total mean
    |contribution| (0..1; the reference's features missing from ``current`` get 0)."""
    ref_rank = _ranks(reference or {})
    cur = {f: float(v) for f, v in (current or {}).items() if v is not None and math.isfinite(float(v))}
    cur_rank = _ranks(cur)
    last = len(cur_rank)
    changes = [abs(ref_rank[f] - cur_rank.get(f, last)) for f in ref_rank]
    out = {"explain.rank_change": float(np.mean(changes)) if changes else 0.0}
    total = sum(abs(v) for v in cur.values())
    for f in list(dict.fromkeys([*cur, *ref_rank])):
        out[f"explain.{f}.share"] = float(abs(cur.get(f, 0.0)) / total) if total > 0 else 0.0
    return out
