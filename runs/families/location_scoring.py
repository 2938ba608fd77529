"""Location scoring: rank candidate/existing retail sites by expected annual sales.

Data (``generate``): one row per site (grain ``site_id``) with the features last observed
at ``observed_at`` (the time column): population within 3 km, median household income,
competitor count, foot traffic (about 1% missing: no counter at the site), parking spaces,
distance to the nearest own store, region and store format.  The label ``annual_sales``
follows a known nonlinear function of those features (``true_log_sales``, parameters in
``ground_truth``) times log-normal noise.

Model: a LightGBM regressor (``training`` stage, ``algorithm: "lightgbm"``) on the site
features.  The ``feature_prep`` stage validates/cleans the data and fixes the transforms
(log transforms, categorical encoding, log target) that the model itself applies, so the
same code prepares training rows and rows scored later by ``predict``.  Saved as
LightGBM model text (``model.txt``) plus JSON metadata (``model.json``); no pickle.

Stage configs (``runs.families.stage_config``):

``feature_prep``
    ``log_transform`` (list of numeric columns fed to the model as ``log1p(x)``; default
    ``["population_3km", "median_income", "foot_traffic", "distance_to_nearest_store_km"]``;
    a monotone transform, so it changes nothing for trees beyond documenting intent),
    ``categorical_encoding`` (``"native"`` LightGBM categorical splits | ``"onehot"`` |
    ``"ordinal"`` codes in sorted order; default ``"native"``), ``categorical_columns``
    (default ``["region", "store_format"]``), ``features`` (numeric + categorical feature
    columns to use; default all of ``FEATURE_SETS``), ``log_target`` (fit on
    ``log1p(annual_sales)``; default ``true``), ``drop_duplicate_sites`` (keep the latest
    observation per ``site_id``; default ``true``).
``training``
    ``algorithm`` (only ``"lightgbm"``), ``hyperparameters`` (LightGBM params; defaults in
    ``DEFAULT_HYPERPARAMETERS``; ``n_estimators`` is accepted for ``num_boost_round``;
    thread settings are always replaced by ``threads``), ``bias_correction`` (with a log
    target, scale ``exp(prediction)`` so the training mean is reproduced; default ``true``).
``evaluation``
    ``k`` (top fraction for ``hit_rate@k`` and ``lift``; default 0.1), ``plot_points``
    (max scatter points; default 500), ``plot_seed`` (sampling seed; default 0).

Validation (``manifest["evaluation"]["validation"]``): ``method`` ``random_holdout``
(default; ``kfold`` is treated the same for the holdout) or ``time_holdout`` (test = the
last ``test_size`` share of the ``observed_at`` range; ``rolling_origin`` likewise),
``test_size`` (default 0.2), ``folds`` (default 3), ``seed`` (default 42).  ``folds()``
gives shuffled k-fold folds unless the method is time-based (``time_holdout`` /
``rolling_origin``), in which case it gives rolling-origin folds; ``backtest_method``
(``kfold`` | ``rolling_origin``) overrides.

Evaluation output:

* metrics: ``rank_correlation``, ``hit_rate@k``, ``lift``, ``calibration``, ``RMSE``
  (definitions in ``runs.metrics.location_scoring``);
* predictions: ``site_id``, ``observed_at``, ``actual``, ``prediction``
  (``prediction_metrics(predictions, manifest)`` computes the metrics from them, so from any
  resample of the rows: a comparison's bootstrap resamples sites, ``BOOTSTRAP_GROUPS``);
* plot: ``{"rank_scatter": {"x": [...], "y": [...], "x_label", "y_label", "n_total"},
  "decile_lift": {"decile": [1..10], "lift": [...]}, "k": k}`` — the scatter holds the
  predicted and actual percentile ranks (0..1, 1 = best) of at most ``plot_points`` test
  sites sampled without replacement; decile 1 is the model's top 10%.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from runs.families import lgb_watch, stage_config, worlds
from runs.metrics import location_scoring as m

NAME = "location_scoring"
PREDICTION_COLUMN = "prediction"  # what predict() returns, as a score run's column
# Data larger than TRAIN_MAX_ROWS is sampled by rows: each row is one site, independent of the
# others, so a uniform sample of sites keeps the score's ranking unbiased (runs.data.read_sample).
# Or, with `distributed: "dask"` in the training config, every row trains on a Dask cluster
# (fit_dask, runs.distributed): prepare() is row-local but for drop_duplicate_sites, which then
# keeps a site's latest observation across the whole file (a first pass records each site's latest
# row by a hash of its key: runs.distributed.LatestRows), and the category
# levels come from a first pass over the whole dataset, not from the training rows.
SAMPLE_BY_SERIES = False
DEFAULT_ROWS = 100_000

GRAIN = "site_id"
TIME = "observed_at"
LABEL = "annual_sales"
# For a comparison's bootstrap (monitoring.comparison): the predictions column of the unit to
# resample (a site), the metrics that are not a function of the rows (none here) and the
# predictions columns prediction_metrics reads (the only ones a replicate needs to copy).
BOOTSTRAP_GROUPS: list[str] = [GRAIN]
CONSTANT_METRICS: set[str] = set()
METRIC_COLUMNS: list[str] = ["actual", "prediction"]

NUMERIC_FEATURES = [
    "population_3km",
    "median_income",
    "competitor_count",
    "foot_traffic",
    "parking_spaces",
    "distance_to_nearest_store_km",
]
CATEGORICAL_FEATURES = ["region", "store_format"]
ALL_FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES

SCHEMA: list[dict] = [
    {"name": "site_id", "dtype": "string", "role": "grain", "description": "Site identifier."},
    {
        "name": "observed_at",
        "dtype": "datetime",
        "role": "time",
        "description": "When the site's features were last observed.",
    },
    {"name": "region", "dtype": "string", "role": "segment", "description": "Sales region of the site."},
    {
        "name": "store_format",
        "dtype": "string",
        "role": "feature",
        "description": "Store format: mall, high_street, retail_park or drive_thru.",
    },
    {
        "name": "population_3km",
        "dtype": "float",
        "role": "feature",
        "description": "Residents within 3 km of the site.",
    },
    {
        "name": "median_income",
        "dtype": "float",
        "role": "feature",
        "description": "Median household income in the trade area (currency units per year).",
    },
    {
        "name": "competitor_count",
        "dtype": "int",
        "role": "feature",
        "description": "Competing stores within 3 km.",
    },
    {
        "name": "foot_traffic",
        "dtype": "float",
        "role": "feature",
        "description": "Average daily pedestrians passing the site (about 1% missing).",
    },
    {
        "name": "parking_spaces",
        "dtype": "int",
        "role": "feature",
        "description": "Parking spaces at the site.",
    },
    {
        "name": "distance_to_nearest_store_km",
        "dtype": "float",
        "role": "feature",
        "description": "Distance to the nearest own store in km (cannibalisation).",
    },
    {
        "name": "annual_sales",
        "dtype": "float",
        "role": "label",
        "description": "Annual sales of the site (currency units).",
    },
]

FEATURE_SETS: dict[str, list[str]] = {
    "site_demographics": ["population_3km", "median_income"],
    "site_competition": ["competitor_count", "distance_to_nearest_store_km"],
    "site_accessibility": ["foot_traffic", "parking_spaces"],
    "site_attributes": ["region", "store_format"],
}

REGIONS = ["central", "east", "north", "south", "west"]
REGION_PROBS = [0.2, 0.2, 0.2, 0.2, 0.2]
FORMATS = ["drive_thru", "high_street", "mall", "retail_park"]
FORMAT_PROBS = [0.15, 0.4, 0.25, 0.2]

_GROUND_TRUTH = {
    "base_sales": 1_200_000.0,
    "population_elasticity": 0.35,  # * log(population / 40_000)
    "population_reference": 40_000.0,
    "income_effect": 0.5,  # * tanh((income - 55_000) / 25_000): saturates
    "income_center": 55_000.0,
    "income_scale": 25_000.0,
    "competitor_effect": -0.3,  # * log1p(competitors)
    "traffic_elasticity": 0.3,  # * log(traffic / 5_000)
    "traffic_reference": 5_000.0,
    "income_traffic_interaction": 0.15,  # * tanh(income term) * log(traffic / 5_000)
    "parking_scale": 40.0,  # parking effect = format weight * (1 - exp(-parking / 40))
    "parking_weight_by_format": {"drive_thru": 0.45, "high_street": 0.05, "mall": 0.05, "retail_park": 0.35},
    "cannibalisation_effect": -0.45,  # * exp(-distance / 2)
    "cannibalisation_scale_km": 2.0,
    "region_effect": {"central": 0.15, "east": 0.0, "north": -0.05, "south": 0.05, "west": 0.1},
    "format_effect": {"drive_thru": -0.1, "high_street": 0.0, "mall": 0.15, "retail_park": 0.05},
    "noise_sigma": 0.15,  # log-normal noise: sales = exp(log_sales + N(0, sigma))
    "foot_traffic_missing_rate": 0.01,
    "observed_from": "2023-01-01T00:00:00",
    "observed_to": "2024-12-31T23:59:59",
}

ORIGIN = _GROUND_TRUTH["observed_from"][:10]  # the world's day 0
PERIOD_DAYS = 1
_CALENDAR = worlds.Calendar(ORIGIN, PERIOD_DAYS)
_TRAINING_DAYS = 731  # observed_from .. observed_to
COMPETITOR_SITES_SHARE = 0.5
COMPETITOR_SHARE = 0.35
CONCEPTS = {
    "competitor_opens": (
        "A competitor opens next to half of the sites and takes 35 % of their sales; the site "
        "data (competitor_count, from the last survey) does not show it yet"
    ),
}

DEFAULT_LOG_TRANSFORM = ["population_3km", "median_income", "foot_traffic", "distance_to_nearest_store_km"]
DEFAULT_HYPERPARAMETERS: dict = {
    "objective": "regression",
    "num_boost_round": 300,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 42,
}
_THREAD_KEYS = {"num_threads", "n_jobs", "nthread", "nthreads", "num_thread"}
_ENCODINGS = ("native", "onehot", "ordinal")
_FORMAT_VERSION = 1


def _log(log, message: str) -> None:
    if log is not None:
        log(message)


# --------------------------------------------------------------------------- data


def ground_truth(seed: int = 0) -> dict:
    """The parameters of ``true_log_sales`` and the noise (the same for every seed)."""
    return json.loads(json.dumps(_GROUND_TRUTH))


def true_log_sales(df: pd.DataFrame, foot_traffic=None) -> np.ndarray:
    """The noiseless ``log(annual_sales)`` of each site under the ground truth.

    ``foot_traffic`` overrides the column (``generate`` passes the values before some were
    blanked out as missing).
    """
    g = _GROUND_TRUTH
    pop = df["population_3km"].to_numpy(dtype=float)
    income = df["median_income"].to_numpy(dtype=float)
    comp = df["competitor_count"].to_numpy(dtype=float)
    traffic = df["foot_traffic"].to_numpy(dtype=float) if foot_traffic is None else np.asarray(foot_traffic)
    parking = df["parking_spaces"].to_numpy(dtype=float)
    dist = df["distance_to_nearest_store_km"].to_numpy(dtype=float)
    region = df["region"].astype(str).to_numpy()
    fmt = df["store_format"].astype(str).to_numpy()

    income_term = np.tanh((income - g["income_center"]) / g["income_scale"])
    log_traffic = np.log(traffic / g["traffic_reference"])
    parking_weight = worlds.lookup(fmt, g["parking_weight_by_format"])
    return (
        math.log(g["base_sales"])
        + g["population_elasticity"] * np.log(pop / g["population_reference"])
        + g["income_effect"] * income_term
        + g["competitor_effect"] * np.log1p(comp)
        + g["traffic_elasticity"] * log_traffic
        + g["income_traffic_interaction"] * income_term * log_traffic
        + parking_weight * (1.0 - np.exp(-parking / g["parking_scale"]))
        + g["cannibalisation_effect"] * np.exp(-dist / g["cannibalisation_scale_km"])
        + worlds.lookup(region, g["region_effect"])
        + worlds.lookup(fmt, g["format_effect"])
    )


def layout(rows: int) -> tuple[dict, int]:
    """The world of a ``rows``-row training batch: ``rows`` candidate sites, observed over
    the two years from ``observed_from`` (a later window of more rows than that also
    observes sites proposed since: see ``generate``)."""
    rows = int(rows)
    if rows < 1:
        raise ValueError("rows must be at least 1")
    return {"sites": rows, "observations_per_day": round(rows / _TRAINING_DAYS, 6)}, _TRAINING_DAYS


def window_periods(world: dict, rows: int) -> int:
    """Days of site observations that hold about ``rows`` observations at the world's rate."""
    return max(1, round(int(rows) / float(world["observations_per_day"])))


def window_rows(world: dict, periods: int, rows: int | None = None) -> int:
    return int(rows) if rows else max(1, round(float(world["observations_per_day"]) * int(periods)))


def describe_world(world: dict) -> str:
    return f"{int(world['sites']):,} candidate sites"


# Sites proposed after the world's first two years are drawn in blocks of this many, each
# block from its own stream, so a new site's attributes do not depend on the window.
_NEW_SITE_BLOCK = 65_536


def _sites(sites: np.random.Generator, n_sites: int) -> tuple[np.ndarray, ...]:
    """Region, format, population, income, competitors, foot traffic, parking, distance to the
    nearest own store and whether a competitor opens next to it (``competitor_opens``), of
    ``n_sites`` candidate sites."""
    region_of = sites.choice(REGIONS, size=n_sites, p=REGION_PROBS)
    fmt_of = sites.choice(FORMATS, size=n_sites, p=FORMAT_PROBS)
    urban = worlds.lookup(region_of, {"central": 0.5, "east": 0.0, "north": -0.3, "south": 0.0, "west": 0.2})
    urban = urban + sites.normal(0.0, 0.5, n_sites)
    population = np.exp(np.log(40_000.0) + 0.6 * urban + sites.normal(0.0, 0.3, n_sites))
    income = np.exp(np.log(52_000.0) + 0.1 * urban + sites.normal(0.0, 0.3, n_sites))
    competitors = sites.poisson(np.exp(0.8 + 0.6 * urban))
    fmt_traffic = worlds.lookup(
        fmt_of, {"drive_thru": -0.4, "high_street": 0.3, "mall": 0.4, "retail_park": -0.2}
    )
    traffic = np.exp(np.log(5_000.0) + 0.5 * urban + fmt_traffic + sites.normal(0.0, 0.4, n_sites))
    fmt_parking = worlds.lookup(
        fmt_of, {"drive_thru": 35.0, "high_street": 6.0, "mall": 80.0, "retail_park": 60.0}
    )
    parking = sites.poisson(fmt_parking * np.exp(-0.3 * urban))
    distance = np.round(sites.gamma(2.0, 2.5 * np.exp(-0.3 * urban)), 3)
    new_competitor = sites.random(n_sites) < COMPETITOR_SITES_SHARE
    return region_of, fmt_of, population, income, competitors, traffic, parking, distance, new_competitor


def _new_sites(seed: int, n: int) -> tuple[np.ndarray, ...]:
    """The first ``n`` candidate sites proposed after the world's first two years (``_sites``
    of block ``b`` drawn from the stream ``[seed, 2, b]``)."""
    blocks = [
        _sites(np.random.default_rng([seed, 2, b]), _NEW_SITE_BLOCK) for b in range(-(-n // _NEW_SITE_BLOCK))
    ]
    return tuple(np.concatenate([block[i] for block in blocks])[:n] for i in range(len(blocks[0])))


def generate(
    rows: int, seed: int, *, world: dict | None = None, window: dict | None = None, concept: str | None = None
) -> pd.DataFrame:
    """``rows`` site observations (deterministic in rows, seed and window); columns = SCHEMA.

    The seed fixes the world's candidate sites (region, format, catchment, competitors,
    traffic, parking, distance to the nearest own store); a window (``{"start",
    "periods"}`` in days, default the first two years) draws which sites are observed when
    (each site at most once: the grain) and their sales that year. A window of more rows
    than the world has sites (a large scoring batch) also observes candidate sites proposed
    after the world's first two years: ids ``sites + 1 ..``, drawn from the same
    distributions (``_new_sites``: a new site is the same in every window). Windows of at
    most ``sites`` rows are as they always were. ``concept="competitor_opens"``: a
    competitor opens next to half of the sites and takes ``COMPETITOR_SHARE`` of their
    sales; the site data (``competitor_count``, from the last survey) does not show it yet."""
    rows = int(rows)
    sizes, first = layout(rows)
    world = world or sizes
    start, days = (0, first) if window is None else worlds.span(_CALENDAR, window)
    n_sites = int(world["sites"])
    g = _GROUND_TRUTH
    # the entities: the world's sites, and the sites proposed since if the window has more
    # rows than the world has sites
    attributes = _sites(np.random.default_rng([seed, 0]), n_sites)
    if rows > n_sites:
        attributes = tuple(
            np.concatenate([old, new])
            for old, new in zip(attributes, _new_sites(seed, rows - n_sites), strict=True)
        )
    region_of, fmt_of, population, income, competitors, traffic, parking, distance, new_competitor = (
        attributes
    )

    rng = np.random.default_rng([seed, 1, start, days])  # this window's observations
    who = rng.choice(max(n_sites, rows), size=rows, replace=False)
    first_second = np.datetime64(g["observed_from"], "s") + np.timedelta64(start * 86_400, "s")
    observed = first_second + rng.integers(0, days * 86_400, rows).astype("timedelta64[s]")

    df = pd.DataFrame(
        {
            "site_id": [f"site_{i + 1:07d}" for i in who],
            "observed_at": pd.to_datetime(observed).astype("datetime64[ns]"),
            "region": region_of[who].astype(str),
            "store_format": fmt_of[who].astype(str),
            "population_3km": np.round(population[who], 0),
            "median_income": np.round(income[who], 0),
            "competitor_count": competitors[who].astype("int64"),
            "foot_traffic": np.round(traffic[who], 1),
            "parking_spaces": parking[who].astype("int64"),
            "distance_to_nearest_store_km": np.maximum(distance[who], 0.05),
            "annual_sales": 0.0,
        }
    )
    true_traffic = df["foot_traffic"].to_numpy(dtype=float).copy()
    log_sales = true_log_sales(df, foot_traffic=true_traffic) + rng.normal(0.0, g["noise_sigma"], rows)
    if concept == "competitor_opens":
        log_sales = log_sales + np.where(new_competitor[who], math.log(1.0 - COMPETITOR_SHARE), 0.0)
    df["annual_sales"] = np.round(np.exp(log_sales), 2)
    missing = rng.random(rows) < g["foot_traffic_missing_rate"]
    df.loc[missing, "foot_traffic"] = np.nan
    for col in ("site_id", "region", "store_format"):
        df[col] = df[col].astype("str")
    return df


# --------------------------------------------------------------------------- prep


def _prep_config(manifest: dict) -> dict:
    cfg = stage_config(manifest, "feature_prep")
    features = list(cfg.get("features") or ALL_FEATURES)
    unknown = [c for c in features if c not in ALL_FEATURES]
    if unknown:
        raise ValueError(f"feature_prep.features: unknown column(s) {unknown}; known: {ALL_FEATURES}")
    categorical = list(cfg.get("categorical_columns", CATEGORICAL_FEATURES))
    bad = [c for c in categorical if c not in ALL_FEATURES]
    if bad:
        raise ValueError(f"feature_prep.categorical_columns: unknown column(s) {bad}")
    log_cols = list(cfg.get("log_transform", DEFAULT_LOG_TRANSFORM))
    bad = [c for c in log_cols if c not in NUMERIC_FEATURES]
    if bad:
        raise ValueError(f"feature_prep.log_transform: not numeric feature column(s) {bad}")
    encoding = cfg.get("categorical_encoding", "native")
    if encoding not in _ENCODINGS:
        raise ValueError(f"feature_prep.categorical_encoding must be one of {_ENCODINGS}, got {encoding!r}")
    return {
        "features": features,
        "categorical_columns": [c for c in features if c in categorical],
        "log_transform": [c for c in features if c in log_cols and c not in categorical],
        "categorical_encoding": encoding,
        "log_target": bool(cfg.get("log_target", True)),
        "drop_duplicate_sites": bool(cfg.get("drop_duplicate_sites", True)),
    }


def prepare(df: pd.DataFrame, manifest: dict, *, log=None) -> pd.DataFrame:
    """The ``feature_prep`` stage: validate the config and clean the rows.

    Drops rows whose label is missing or negative, keeps the latest observation per
    ``site_id`` (``drop_duplicate_sites``), parses ``observed_at`` and casts categorical
    columns to strings.  The log transforms / encodings named in the config are applied
    inside the model (``fit`` and ``predict``), so scoring new rows uses the same code.
    """
    cfg = _prep_config(manifest)
    missing = [c for c in cfg["features"] if c not in df.columns]
    if missing:
        raise ValueError(
            f"missing column: {missing[0]}" if len(missing) == 1 else f"missing columns: {missing}"
        )
    out = df.copy()
    if TIME in out.columns:
        out[TIME] = pd.to_datetime(out[TIME])
    for col in cfg["categorical_columns"]:
        out[col] = out[col].astype("str").where(out[col].notna(), np.nan)
    n0 = len(out)
    if LABEL in out.columns:
        label = pd.to_numeric(out[LABEL], errors="coerce")
        keep = label.notna() & (label >= 0)
        out = out.loc[keep].copy()
        out[LABEL] = label[keep].astype(float)
        if n0 - len(out):
            _log(log, f"dropped {n0 - len(out)} rows with a missing or negative {LABEL}")
    if cfg["drop_duplicate_sites"] and GRAIN in out.columns:
        n1 = len(out)
        if TIME in out.columns:
            out = out.sort_values([GRAIN, TIME], kind="stable")
        out = out.drop_duplicates(GRAIN, keep="last").sort_index()
        if n1 - len(out):
            _log(log, f"dropped {n1 - len(out)} older duplicate observations of a {GRAIN}")
    _log(
        log,
        f"feature_prep: {len(out)} rows; log1p on {cfg['log_transform']}; "
        f"{cfg['categorical_encoding']} encoding of {cfg['categorical_columns']}; "
        f"log target: {cfg['log_target']}",
    )
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- split


def _validation(manifest: dict) -> dict:
    v = dict((manifest.get("evaluation") or {}).get("validation") or {})
    method = v.get("method", "random_holdout")
    if method not in ("random_holdout", "kfold", "time_holdout", "rolling_origin"):
        raise ValueError(f"unsupported validation method {method!r}")
    test_size = float(v.get("test_size", 0.2))
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"validation.test_size must be in (0, 1), got {test_size}")
    folds = int(v.get("folds", 3))
    if folds < 2:
        raise ValueError(f"validation.folds must be at least 2, got {folds}")
    backtest = v.get("backtest_method") or (
        "rolling_origin" if method in ("time_holdout", "rolling_origin") else "kfold"
    )
    if backtest not in ("kfold", "rolling_origin"):
        raise ValueError(f"unsupported backtest_method {backtest!r}")
    return {
        "method": method,
        "test_size": test_size,
        "folds": folds,
        "seed": int(v.get("seed", 42)),
        "backtest": backtest,
    }


def _times(df: pd.DataFrame) -> np.ndarray:
    if TIME not in df.columns:
        raise ValueError(f"missing column: {TIME}")
    return pd.to_datetime(df[TIME]).to_numpy(dtype="datetime64[ns]").astype("int64")


def split(df: pd.DataFrame, manifest: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holdout split: a seeded random ``test_size`` share, or the last ``test_size`` of time."""
    v = _validation(manifest)
    n = len(df)
    if n < 2:
        raise ValueError("need at least 2 rows to split")
    if v["method"] in ("time_holdout", "rolling_origin"):
        t = _times(df)
        t0, t1 = t.min(), t.max()
        cutoff = t0 + (1.0 - v["test_size"]) * (t1 - t0)
        test_mask = t > cutoff
    else:
        perm = np.random.default_rng(v["seed"]).permutation(n)
        n_test = min(n - 1, max(1, round(v["test_size"] * n)))
        test_mask = np.zeros(n, dtype=bool)
        test_mask[perm[:n_test]] = True
    if test_mask.all() or not test_mask.any():
        raise ValueError("the split left the train or the test set empty")
    return df.loc[~test_mask].copy(), df.loc[test_mask].copy()


def folds(df: pd.DataFrame, manifest: dict) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Backtest folds.

    ``kfold``: rows shuffled with ``seed`` and cut into ``folds`` near-equal test parts,
    each fold training on the rest.  ``rolling_origin``: the ``observed_at`` range is cut
    into ``folds + 1`` equal windows; fold i trains on windows ``1..i`` and tests on
    window ``i + 1``.
    """
    v = _validation(manifest)
    n = len(df)
    k = v["folds"]
    out = []
    if v["backtest"] == "kfold":
        if n < k:
            raise ValueError(f"{n} rows cannot make {k} folds")
        perm = np.random.default_rng(v["seed"]).permutation(n)
        for part in np.array_split(perm, k):
            mask = np.zeros(n, dtype=bool)
            mask[part] = True
            out.append((df.loc[~mask].copy(), df.loc[mask].copy()))
        return out
    t = _times(df)
    t0, t1 = t.min(), t.max()
    edges = [t0 + (t1 - t0) * i / (k + 1) for i in range(k + 2)]
    for i in range(1, k + 1):
        train_mask = t <= edges[i]
        test_mask = (t > edges[i]) & (t <= edges[i + 1])
        if train_mask.any() and test_mask.any():
            out.append((df.loc[train_mask].copy(), df.loc[test_mask].copy()))
    if not out:
        raise ValueError("rolling-origin folds are empty (observed_at has no spread)")
    return out


# --------------------------------------------------------------------------- model


class LocationModel:
    """A fitted LightGBM booster plus the feature transforms it was trained with."""

    def __init__(self, booster: lgb.Booster, meta: dict):
        self.booster = booster
        self.meta = meta

    @property
    def required_columns(self) -> list[str]:
        return list(self.meta["features"])

    def design(self, rows: pd.DataFrame) -> np.ndarray:
        """The model's input matrix for raw site rows (float64, NaN = missing)."""
        meta = self.meta
        for col in meta["features"]:
            if col not in rows.columns:
                raise ValueError(f"missing column: {col}")
        blocks = []
        for col in meta["features"]:
            if col in meta["categories"]:
                levels = meta["categories"][col]
                values = rows[col].astype("str").where(rows[col].notna(), None)
                codes = pd.Index(levels).get_indexer(values).astype(float)  # -1: unseen/missing
                if meta["categorical_encoding"] == "onehot":
                    onehot = np.zeros((len(rows), len(levels)))
                    hit = codes >= 0
                    onehot[np.flatnonzero(hit), codes[hit].astype(int)] = 1.0
                    blocks.append(onehot)
                else:
                    codes[codes < 0] = np.nan  # unseen or missing level
                    blocks.append(codes[:, None])
            else:
                x = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float)
                if col in meta["log_transform"]:
                    x = np.log1p(np.clip(x, 0.0, None))
                blocks.append(x[:, None])
        return np.hstack(blocks) if blocks else np.empty((len(rows), 0))

    def predict(self, rows: pd.DataFrame, threads: int = 1) -> np.ndarray:
        x = self.design(rows)
        raw = self.booster.predict(x, num_threads=threads)
        if self.meta["log_target"]:
            return self.meta["target_scale"] * np.exp(raw) - 1.0
        return raw


def _design_names(meta: dict) -> tuple[list[str], list[int]]:
    names, cat_idx = [], []
    for col in meta["features"]:
        if col in meta["categories"]:
            if meta["categorical_encoding"] == "onehot":
                names.extend(f"{col}={lvl}" for lvl in meta["categories"][col])
            else:
                if meta["categorical_encoding"] == "native":
                    cat_idx.append(len(names))
                names.append(col)
        else:
            names.append(f"log1p_{col}" if col in meta["log_transform"] else col)
    return names, cat_idx


def _lgb_params(cfg: dict, threads: int) -> tuple[dict, int]:
    hp = dict(DEFAULT_HYPERPARAMETERS)
    user = dict(cfg.get("hyperparameters") or {})
    if "n_estimators" in user:
        user.setdefault("num_boost_round", user.pop("n_estimators"))
        user.pop("n_estimators", None)
    hp.update(user)
    rounds = int(hp.pop("num_boost_round"))
    if rounds < 1:
        raise ValueError("hyperparameters.num_boost_round must be at least 1")
    for key in _THREAD_KEYS | {"verbose", "verbosity"}:
        hp.pop(key, None)
    hp.update({"num_threads": int(threads), "verbose": -1, "deterministic": True, "force_row_wise": True})
    return hp, rounds


def _valid_set(model: LocationModel, valid: pd.DataFrame | None, dataset: lgb.Dataset, log_target: bool):
    """The validation rows (those with a usable label) as a LightGBM Dataset on the training
    data's bins, or None."""
    if valid is None or LABEL not in valid.columns:
        return None
    y = pd.to_numeric(valid[LABEL], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(y) & (y >= 0 if log_target else True)
    if not keep.any():
        return None
    target = np.log1p(y[keep]) if log_target else y[keep]
    return lgb.Dataset(
        model.design(valid.loc[keep]),
        label=target,
        reference=dataset,
        params=dict(dataset.params or {}),
        free_raw_data=True,
    )


def _new_model(cfg: dict, prep: dict, categories: dict, threads: int) -> tuple[LocationModel, list, list]:
    """An untrained model (its metadata: transforms, category levels, LightGBM params), its
    design column names and the indices of its native categorical columns."""
    meta = {
        "format_version": _FORMAT_VERSION,
        "family": NAME,
        "label": LABEL,
        "features": prep["features"],
        "log_transform": prep["log_transform"],
        "categorical_encoding": prep["categorical_encoding"],
        "categories": categories,
        "log_target": prep["log_target"],
        "target_scale": 1.0,
    }
    names, cat_idx = _design_names(meta)
    meta["design_columns"] = names
    params, rounds = _lgb_params(cfg, threads)
    meta["params"] = params
    meta["num_boost_round"] = rounds
    return LocationModel(None, meta), names, cat_idx


def fit(
    train: pd.DataFrame,
    manifest: dict,
    *,
    threads: int = 1,
    log=None,
    callbacks: list | None = None,
    valid: pd.DataFrame | None = None,
) -> LocationModel:
    """The ``training`` stage: a LightGBM regressor on the prepared site features.

    ``callbacks`` are appended to ``lightgbm.train``'s; with them, the loss (the params'
    metric, ``l2`` by default, on the model's target: log1p of sales with a log target) is
    evaluated per iteration on the training rows (``"train"``) and on ``valid`` (``"valid"``,
    rows never trained on, e.g. the holdout). The booster is the same with or without."""
    cfg = stage_config(manifest, "training")
    algorithm = cfg.get("algorithm", "lightgbm")
    if algorithm != "lightgbm":
        raise ValueError(f"training.algorithm {algorithm!r} is not supported (use 'lightgbm')")
    prep = _prep_config(manifest)
    if LABEL not in train.columns:
        raise ValueError(f"missing column: {LABEL}")
    y = pd.to_numeric(train[LABEL], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(y)
    if prep["log_target"]:
        keep &= y >= 0
    if keep.sum() < 10:
        raise ValueError("need at least 10 rows with a usable label to train")
    train = train.loc[keep]
    y = y[keep]
    categories = {}
    for col in prep["categorical_columns"]:
        values = train[col].dropna().astype("str")
        categories[col] = sorted(values.unique().tolist())
    model, names, cat_idx = _new_model(cfg, prep, categories, threads)
    meta, params, rounds = model.meta, model.meta["params"], model.meta["num_boost_round"]
    with threadpool_limits(threads):
        x = model.design(train)
        target = np.log1p(y) if prep["log_target"] else y
        dataset = lgb.Dataset(
            x,
            label=target,
            feature_name=names,
            categorical_feature=cat_idx if cat_idx else "auto",
            params={"verbose": -1, "max_bin": params.get("max_bin", 255)},
            free_raw_data=True,
        )
        _log(
            log,
            f"training LightGBM: {len(y)} rows, {len(names)} inputs, {rounds} rounds, {threads} thread(s)",
        )
        valid_set = _valid_set(model, valid, dataset, prep["log_target"]) if callbacks else None
        watch = lgb_watch(callbacks, dataset, valid_set)
        booster = lgb.train(params, dataset, num_boost_round=rounds, **watch)
        model.booster = booster
        if prep["log_target"] and cfg.get("bias_correction", True):
            fitted = np.exp(booster.predict(x, num_threads=threads))
            meta["target_scale"] = float(np.sum(1.0 + y) / np.sum(fitted))
            _log(log, f"log-target bias correction factor {meta['target_scale']:.4f}")
    return model


def fit_dask(frames, manifest: dict, *, levels: dict, cluster, log=None) -> tuple[LocationModel, int]:
    """The ``training`` stage on a Dask cluster (``runs.distributed``): (model, rows trained on).

    ``frames`` are the dataset's prepared training rows, chunk by chunk; ``levels`` every text
    column's levels in the whole dataset (the first pass), which fix the categorical encoding
    before the first chunk is encoded. Each chunk is encoded here (``LocationModel.design``)
    and scattered to the cluster, which trains the booster with ``fit``'s hyperparameters; the
    log-target bias correction is summed on the cluster. The model is the same kind as
    ``fit``'s (same files, same predict path). No training curves: lightgbm.dask keeps them on
    the workers."""
    cfg = stage_config(manifest, "training")
    if cfg.get("algorithm", "lightgbm") != "lightgbm":
        raise ValueError(f"training.algorithm {cfg.get('algorithm')!r} is not supported (use 'lightgbm')")
    prep = _prep_config(manifest)
    categories = {col: list(levels.get(col, [])) for col in prep["categorical_columns"]}
    model, names, cat_idx = _new_model(cfg, prep, categories, threads=1)
    parts, rows = [], 0
    for chunk in frames:
        if LABEL not in chunk.columns:
            raise ValueError(f"missing column: {LABEL}")
        y = pd.to_numeric(chunk[LABEL], errors="coerce").to_numpy(dtype=float)
        keep = np.isfinite(y) & ((y >= 0) if prep["log_target"] else True)
        if not keep.any():
            continue
        y = y[keep]
        target = np.log1p(y) if prep["log_target"] else y
        parts.append(cluster.scatter(model.design(chunk.loc[keep]), target, 1.0 + y))
        rows += len(y)
    if rows < 10:
        raise ValueError("need at least 10 rows with a usable label to train")
    x, target, one_plus_y = cluster.concat(parts)
    rounds = model.meta["num_boost_round"]
    _log(log, f"training LightGBM on the Dask cluster: {rows} rows, {len(names)} inputs, {rounds} rounds")
    model.booster = cluster.fit(
        x, target, model.meta["params"], rounds, categorical=cat_idx or None, names=names
    )
    if prep["log_target"] and cfg.get("bias_correction", True):
        fitted = np.exp(cluster.predict(model.booster, x))
        total, fitted_total = cluster.compute(one_plus_y.sum(), fitted.sum())
        model.meta["target_scale"] = float(total / fitted_total)
        _log(log, f"log-target bias correction factor {model.meta['target_scale']:.4f}")
    return model, rows


def predict(model: LocationModel, rows: pd.DataFrame) -> list:
    """Predicted annual sales (floats) for rows of site features (no label needed)."""
    with threadpool_limits(1):
        return [float(v) for v in model.predict(rows, threads=1)]


def _eval_config(manifest: dict) -> dict:
    cfg = stage_config(manifest, "evaluation")
    k = float(cfg.get("k", 0.1))
    if not 0.0 < k <= 1.0:
        raise ValueError(f"evaluation.k must be a fraction in (0, 1], got {k}")
    return {
        "k": k,
        "plot_points": int(cfg.get("plot_points", 500)),
        "plot_seed": int(cfg.get("plot_seed", 0)),
    }


def prediction_metrics(predictions: pd.DataFrame, manifest: dict) -> dict[str, float]:
    """``evaluate``'s metrics recomputed from its predictions frame (``actual``,
    ``prediction``) with the evaluation stage's ``k``, for any subset or resample of its rows;
    rows without a finite actual and prediction are left out, as ``evaluate`` leaves them out
    (every metric ``nan`` when none is left)."""
    k = _eval_config(manifest)["k"]
    actual = predictions["actual"].to_numpy(dtype=float)
    pred = predictions["prediction"].to_numpy(dtype=float)
    ok = np.isfinite(actual) & np.isfinite(pred)
    if not ok.any():
        return dict.fromkeys(("rank_correlation", "hit_rate@k", "lift", "calibration", "RMSE"), math.nan)
    return {key: float(val) for key, val in m.all_metrics(actual[ok], pred[ok], k).items()}


def evaluate(model: LocationModel, test: pd.DataFrame, manifest: dict) -> tuple[dict, pd.DataFrame, dict]:
    """Metrics, holdout predictions and plot data (see the module docstring)."""
    cfg = _eval_config(manifest)
    if LABEL not in test.columns:
        raise ValueError(f"missing column: {LABEL}")
    actual_all = pd.to_numeric(test[LABEL], errors="coerce").to_numpy(dtype=float)
    with threadpool_limits(1):
        pred_all = model.predict(test, threads=1)
    ok = np.isfinite(actual_all) & np.isfinite(pred_all)
    if not ok.any():
        raise ValueError("no test rows with a label to evaluate")
    actual, pred = actual_all[ok], pred_all[ok]
    k = cfg["k"]

    cols = [c for c in (GRAIN, TIME) if c in test.columns]
    predictions = test[cols].reset_index(drop=True).copy()
    predictions["actual"] = actual_all
    predictions["prediction"] = pred_all
    metrics = prediction_metrics(predictions, manifest)

    n = actual.size
    pct_actual = (m.average_ranks(actual) - 1) / max(n - 1, 1)
    pct_pred = (m.average_ranks(pred) - 1) / max(n - 1, 1)
    take = np.arange(n)
    if n > cfg["plot_points"]:
        take = np.sort(np.random.default_rng(cfg["plot_seed"]).choice(n, cfg["plot_points"], replace=False))
    deciles = m.decile_lift(actual, pred, 10)
    plot = {
        "rank_scatter": {
            "x": [round(float(v), 4) for v in pct_pred[take]],
            "y": [round(float(v), 4) for v in pct_actual[take]],
            "x_label": "predicted rank (percentile, 1 = best)",
            "y_label": "actual rank (percentile, 1 = best)",
            "n_total": int(n),
        },
        "decile_lift": {
            "decile": list(range(1, len(deciles) + 1)),
            "lift": [round(v, 4) for v in deciles],
            "x_label": "predicted decile (1 = top 10%)",
            "y_label": "mean actual / overall mean",
        },
        "k": k,
    }
    return metrics, predictions, plot


# --------------------------------------------------------------------------- persistence


def save(model: LocationModel, directory: Path) -> list[str]:
    """Write ``model.txt`` (LightGBM model text) and ``model.json`` (metadata)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.txt").write_text(model.booster.model_to_string(), encoding="utf-8")
    (directory / "model.json").write_text(json.dumps(model.meta, indent=2, sort_keys=True), encoding="utf-8")
    return ["model.txt", "model.json"]


def load(directory: Path) -> LocationModel:
    directory = Path(directory)
    meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    if meta.get("family") != NAME:
        raise ValueError(f"{directory} does not hold a {NAME} model")
    if meta.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"unsupported model format version {meta.get('format_version')!r}")
    booster = lgb.Booster(model_str=(directory / "model.txt").read_text(encoding="utf-8"))
    return LocationModel(booster, meta)


def example_output(model: LocationModel, rows: pd.DataFrame) -> dict:
    """Predicted sales and rank of a few sites, as JSON-able data."""
    rows = rows.head(10)
    preds = predict(model, rows)
    ranks = m.average_ranks(-np.asarray(preds)) if preds else np.array([])
    inputs = []
    for rec in rows[[c for c in [GRAIN, TIME, *model.required_columns] if c in rows.columns]].to_dict(
        "records"
    ):
        clean = {}
        for key, val in rec.items():
            if isinstance(val, pd.Timestamp):
                clean[key] = val.isoformat()
            elif isinstance(val, float | np.floating) and not np.isfinite(val):
                clean[key] = None
            elif isinstance(val, np.generic):
                clean[key] = val.item()
            else:
                clean[key] = val
        inputs.append(clean)
    outputs = [
        {
            GRAIN: str(rows[GRAIN].iloc[i]) if GRAIN in rows.columns else i,
            "predicted_annual_sales": round(p, 2),
            "rank": int(ranks[i]),
        }
        for i, p in enumerate(preds)
    ]
    return {"input": inputs, "output": outputs, "label": LABEL, "unit": "currency units per year"}
