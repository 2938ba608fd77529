"""Each family's own view of why its model predicts what it does (the document's
``family_view``) and the per-row extras (pricing's local demand curve). Plain numpy/pandas,
no Django.

pricing
    ``segments``: the demand curve of each segment's typical row, ``q0 * m ** e`` over price
    multipliers ``m`` (from ``1 + 2 min_change`` to ``1 + 2 max_change`` of the model's price
    bounds), with ``q0`` the model's mean predicted units of the segment's sample rows at
    their prices, ``e`` the segment's elasticity and the band from its confidence interval
    (the log-log model's demand is exactly ``q0 * m ** e``: the point curve is the model's own
    prediction on the repriced rows). ``revenue_curve``: the sample's predicted revenue and
    margin when every price is multiplied by ``m``, and the multiplier within the bounds that
    maximises the model's objective. ``elasticity_drivers``: the features that move the
    elasticity (this model's elasticity depends on the segment only).
next_best_action
    ``uplift_by_segment``: mean predicted uplift and the observed uplift (treated minus
    control conversion rate) per segment of the sample; ``qini``: the model's Qini curve on
    the sample and the random line (``runs.metrics.next_best_action.qini_curve``);
    ``choice_drivers``: mean |contribution| to the uplift score per feature.
location_scoring
    ``average_output``: the base value (the average site on the output's scale); ``sites``:
    up to 20 sample sites with their contributions (a waterfall from the average site);
    ``comparables``: each site's 5 nearest sample sites by standardized numeric features
    (the model's log transforms applied) plus 1 per differing categorical feature.
forecasting
    ``regressors``: mean |contribution| of the known regressors (a LightGBM forecaster's
    ``promo``/``price``; none for the statistical ones); ``components``: null — the model
    stores forecast paths, not a trend/seasonality/holiday decomposition.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from runs.metrics import next_best_action as nba_metrics

SITES = 20
COMPARABLES = 5
CURVE_POINTS = 21


def _finite(values) -> list:
    return [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]


# --------------------------------------------------------------------------- pricing


def _multipliers(model: dict, points: int = CURVE_POINTS) -> np.ndarray:
    bounds = model.get("price_bounds") or {"min_change": -0.2, "max_change": 0.2}
    lo = max(0.05, 1.0 + 2.0 * float(bounds["min_change"]))
    hi = 1.0 + 2.0 * float(bounds["max_change"])
    if hi <= lo:
        hi = lo + 0.4
    return np.linspace(lo, hi, points)


def segment_elasticity(model: dict, segment: str) -> dict:
    """The model's elasticity entry of a segment (the overall one for an unseen segment)."""
    table = model.get("segment_elasticity") or {}
    return table.get(str(segment)) or model["overall_elasticity"]


def pricing_view(
    family, model: dict, sample: pd.DataFrame, mean_abs: list[dict] | None
) -> tuple[dict, list[str]]:
    notes = []
    mult = _multipliers(model)
    segments = []
    for segment in sorted(sample["segment"].astype(str).unique()):
        rows = sample[sample["segment"].astype(str) == segment]
        entry = segment_elasticity(model, segment)
        e, low, high = float(entry["estimate"]), float(entry["ci_low"]), float(entry["ci_high"])
        repriced = rows.iloc[np.tile(np.arange(len(rows)), len(mult))].reset_index(drop=True)
        repriced["price"] = np.repeat(mult, len(rows)) * np.tile(
            rows["price"].to_numpy(dtype=float), len(mult)
        )
        units = (
            np.asarray(family.predict(model, repriced), dtype=float)
            .reshape(len(mult), len(rows))
            .mean(axis=1)
        )
        q0 = float(np.asarray(family.predict(model, rows), dtype=float).mean())
        band = np.stack([q0 * mult**low, q0 * mult**high])
        segments.append(
            {
                "segment": segment,
                "elasticity": e,
                "ci_low": low,
                "ci_high": high,
                "price": (float(rows["price"].median()) * mult).tolist(),
                "units": units.tolist(),
                "units_low": band.min(axis=0).tolist(),
                "units_high": band.max(axis=0).tolist(),
            }
        )
    repriced = sample.iloc[np.tile(np.arange(len(sample)), len(mult))].reset_index(drop=True)
    price = np.tile(sample["price"].to_numpy(dtype=float), len(mult)) * np.repeat(mult, len(sample))
    repriced["price"] = price
    units = np.asarray(family.predict(model, repriced), dtype=float)
    revenue = (price * units).reshape(len(mult), len(sample)).sum(axis=1)
    if "unit_cost" in sample.columns:
        cost = np.tile(pd.to_numeric(sample["unit_cost"], errors="coerce").to_numpy(dtype=float), len(mult))
        margin = ((price - cost) * units).reshape(len(mult), len(sample)).sum(axis=1)
    else:
        margin = np.full(len(mult), np.nan)
        notes.append("pricing view: the sample has no unit_cost, so the margin curve is empty")
    objective = model.get("objective", "margin")
    target = margin if objective == "margin" and np.isfinite(margin).all() else revenue
    bounds = model.get("price_bounds") or {"min_change": -0.2, "max_change": 0.2}
    allowed = (mult >= 1.0 + float(bounds["min_change"]) - 1e-9) & (
        mult <= 1.0 + float(bounds["max_change"]) + 1e-9
    )
    best = float(mult[allowed][int(np.argmax(target[allowed]))]) if allowed.any() else 1.0
    notes.append(
        "pricing view: the revenue/margin curve moves every sample price by the same multiplier; "
        f"recommended_multiplier is the one within the price bounds that maximises the model's "
        f"objective ({objective}) on that curve (the model's own recommendations are per product)"
    )
    table = model.get("segment_elasticity") or {}
    estimates = [float(v["estimate"]) for v in table.values()]
    per_segment = bool((model.get("hyperparameters") or {}).get("per_segment", True))
    drivers = []
    if per_segment and len(estimates) > 1:
        drivers.append({"feature": "segment", "effect": float(max(estimates) - min(estimates))})
    notes.append(
        "pricing view: in the log-log model the elasticity depends on the segment only "
        "(elasticity_drivers' effect: the spread of the segment elasticities); price, promo and "
        "the calendar move demand, not its elasticity"
    )
    view = {
        "kind": "pricing",
        "segments": segments,
        "revenue_curve": {
            "multiplier": mult.tolist(),
            "revenue": _finite(revenue),
            "margin": _finite(margin),
            "recommended_multiplier": best,
        },
        "elasticity_drivers": drivers,
    }
    return view, notes


def pricing_row_extras(family, model: dict, row: pd.DataFrame) -> dict:
    """A row's elasticity and its local demand curve (the model's units over a price grid
    around the row's price)."""
    entry = segment_elasticity(model, str(row["segment"].iloc[0]))
    mult = _multipliers(model)
    grid = float(row["price"].iloc[0]) * mult
    repriced = row.iloc[np.zeros(len(mult), dtype=int)].reset_index(drop=True)
    repriced["price"] = grid
    units = np.asarray(family.predict(model, repriced), dtype=float)
    return {
        "elasticity": float(entry["estimate"]),
        "demand_curve": {"price": grid.tolist(), "units": units.tolist()},
    }


# --------------------------------------------------------------------------- next best action


def nba_view(family, model, sample: pd.DataFrame, mean_abs: list[dict] | None) -> tuple[dict, list[str]]:
    notes = []
    score = np.asarray(family.predict(model, sample), dtype=float)
    labelled = "treatment" in sample.columns and "converted" in sample.columns
    by_segment = []
    qini = None
    if labelled:
        t = pd.to_numeric(sample["treatment"], errors="coerce").to_numpy(dtype=float)
        y = pd.to_numeric(sample["converted"], errors="coerce").to_numpy(dtype=float)
        if "segment" in sample.columns:
            seg = sample["segment"].astype(str).to_numpy()
            for s in sorted(set(seg)):
                hit = seg == s
                treated, control = hit & (t == 1), hit & (t == 0)
                observed = (
                    float(y[treated].mean() - y[control].mean()) if treated.any() and control.any() else None
                )
                by_segment.append(
                    {
                        "segment": s,
                        "predicted_uplift": float(score[hit].mean()),
                        "observed_uplift": observed,
                        "n": int(hit.sum()),
                    }
                )
        n, q = nba_metrics.qini_curve(y, t, score)
        fraction = np.linspace(0.0, 1.0, 101)
        model_curve = np.interp(fraction * n[-1], n, q)
        qini = {
            "fraction": fraction.tolist(),
            "model": model_curve.tolist(),
            "random": (fraction * q[-1]).tolist(),
        }
        notes.append(
            f"next best action view: uplift by segment and the Qini curve are measured on the {len(sample)} "
            "explained holdout rows (observed uplift is noisy on small segments)"
        )
    else:
        notes.append("next best action view: the sample has no treatment/converted columns (no Qini curve)")
    view = {
        "kind": "next_best_action",
        "uplift_by_segment": by_segment,
        "qini": qini,
        "choice_drivers": [{"feature": e["feature"], "mean_abs": e["mean_abs"]} for e in (mean_abs or [])],
    }
    return view, notes


# --------------------------------------------------------------------------- location scoring


def _site_matrix(model, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Standardized numeric features (the model's log transforms applied; NaN -> 0 after
    standardizing) and the categorical features as text."""
    meta = model.meta
    numeric = [c for c in meta["features"] if c not in meta["categories"]]
    categorical = [c for c in meta["features"] if c in meta["categories"]]
    cols = []
    for c in numeric:
        x = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
        if c in meta["log_transform"]:
            x = np.log1p(np.clip(x, 0.0, None))
        sd = np.nanstd(x)
        cols.append(np.nan_to_num((x - np.nanmean(x)) / (sd if sd > 0 else 1.0)))
    z = np.column_stack(cols) if cols else np.zeros((len(frame), 0))
    cats = (
        frame[categorical].astype(str).to_numpy() if categorical else np.zeros((len(frame), 0), dtype=object)
    )
    return z, cats


def location_view(
    model,
    sample: pd.DataFrame,
    phi: np.ndarray,
    output: np.ndarray,
    base: float,
    features: list[str],
    grain: str,
) -> tuple[dict, list[str]]:
    n = min(SITES, len(sample))
    ids = (
        sample[grain].astype(str).to_numpy()
        if grain in sample.columns
        else np.array([str(i) for i in range(len(sample))])
    )
    sites = [
        {
            "site_id": str(ids[i]),
            "output": float(output[i]),
            "contributions": {f: float(phi[i, j]) for j, f in enumerate(features)},
        }
        for i in range(n)
    ]
    z, cats = _site_matrix(model, sample)
    comparables = {}
    for i in range(n):
        dist = np.sqrt(((z - z[i]) ** 2).sum(axis=1)) + (cats != cats[i]).sum(axis=1)
        dist[i] = np.inf
        nearest = np.argsort(dist, kind="stable")[: min(COMPARABLES, len(sample) - 1)]
        comparables[str(ids[i])] = [str(ids[k]) for k in nearest]
    view = {
        "kind": "location_scoring",
        "average_output": float(base),
        "sites": sites,
        "comparables": comparables,
    }
    return view, []


# --------------------------------------------------------------------------- forecasting


# Periods of a Prophet decomposition shown (from the end of the history).
COMPONENT_PERIODS = 120


def prophet_components(model: dict) -> dict | None:
    """A Prophet forecaster's decomposition of the total forecast (summed over its series)
    for the first COMPONENT_PERIODS periods after its history: trend, its seasonalities and
    holidays as Prophet computed them, and "regressors" (the known features at each series'
    median: what is left of the forecast), so the parts add up to the forecast."""
    state = model.get("state") or {}
    parts = state.get("components") or {}
    if model.get("algorithm") != "prophet" or not parts or "paths" not in state:
        return None
    n = min(COMPONENT_PERIODS, len(state.get("dates") or []))
    total = np.asarray(state["paths"], dtype=float)[:, :n].sum(axis=0)
    out: dict = {"date": list(state["dates"][:n])}
    explained = np.zeros(n)
    for name in ("trend", "daily", "weekly", "yearly", "holidays"):
        if name in parts:
            values = np.asarray(parts[name], dtype=float)[:, :n].sum(axis=0)
            explained += values
            out[name] = [round(float(v), 4) for v in values]
    if state.get("known"):
        out["regressors"] = [round(float(v), 4) for v in total - explained]
    return out


def forecasting_view(model: dict, mean_abs: list[dict] | None) -> tuple[dict, list[str]]:
    components = prophet_components(model)
    if components is not None:
        known = list((model.get("state") or {}).get("known") or [])
        regressors = [
            {"feature": e["feature"], "mean_abs": e["mean_abs"]}
            for e in (mean_abs or [])
            if e["feature"] in known
        ]
        note = (
            "Prophet's decomposition of the total forecast over the model's series, for the periods after "
            "its history: trend, seasonalities and holidays as Prophet fitted them, and the regressors at "
            "each series' typical value."
        )
        return {"kind": "forecasting", "components": components, "regressors": regressors, "note": note}, []
    known = list(model.get("known_features") or []) if model.get("algorithm") == "lightgbm" else []
    regressors = [
        {"feature": e["feature"], "mean_abs": e["mean_abs"]}
        for e in (mean_abs or [])
        if e["feature"] in known
    ]
    if known:
        note = (
            f"The {model['algorithm']} forecaster reads the regressors {', '.join(known)}; their mean "
            "|contribution| is shown. It has no trend / seasonality / holidays decomposition of its "
            "own (the lags and calendar features act together): the per-series decomposition, when "
            "shown, sums its Shapley contributions by kind of feature."
        )
    else:
        note = (
            f"The {model.get('algorithm')} forecaster uses no regressors (its forecast depends on the "
            "series and the date only), and the model stores forecast paths rather than a "
            "trend/seasonality decomposition of its own: the per-series decomposition, when shown, "
            "sums its Shapley contributions by kind of feature."
        )
    return {"kind": "forecasting", "components": None, "regressors": regressors, "note": note}, []
