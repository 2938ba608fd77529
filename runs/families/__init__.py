"""The four model families: plain numpy/pandas/scikit-learn/statsmodels/LightGBM code, no Django.

Every family module (``forecasting``, ``pricing``, ``next_best_action``, ``location_scoring``)
exposes the same interface, which the pipeline executor (``runs/pipeline.py``), the
monitoring checks and the fixture builder call:

``NAME: str``
    The family key (``recipes.catalog.FAMILIES``).
``SCHEMA: list[dict]``
    Every column ``generate()`` produces, in order:
    ``{"name", "dtype" ("float"|"int"|"string"|"date"|"datetime"|"bool"), "role", "description"}``
    with role one of ``grain`` (part of the row key), ``time`` (the timestamp; every family
    has one, used for ``min_history`` and freshness), ``label`` (a target/outcome),
    ``treatment``, ``feature``, ``segment``.
``FEATURE_SETS: dict[str, list[str]]``
    Feature-set name -> columns; a manifest's ``requirements.feature_sets`` names these
    (an unknown name is treated as a single column of that name).
``DEFAULT_ROWS: int``
    Rows of the default train run (the synthetic dataset used when a run gives no data).
``generate(rows: int, seed: int, *, world=None, window=None, concept=None) -> pandas.DataFrame``
    Deterministic synthetic data with a known ground truth. The generator is a *world*
    (``runs/families/worlds.py``): the seed fixes the entities and the ground truth, the
    window (``{"start": date, "periods": n}``) the dates; ``generate(rows, seed)`` is the
    first window of the world a ``rows``-row training batch lives in.
``ORIGIN``, ``PERIOD_DAYS``, ``CONCEPTS``, ``layout(rows)``, ``window_periods(world, rows)``,
``window_rows(world, periods, rows)``, ``describe_world(world)``
    The world's calendar, its named ground-truth changes and its size (see ``worlds``).
``ground_truth(seed: int) -> dict``
    The true parameters behind ``generate`` (e.g. the elasticity), for tests and docs.
``prepare(df, manifest, *, log) -> DataFrame``
    The ``feature_prep`` stage (config from the manifest's feature_prep stage).
``split(df, manifest) -> (train, test)``
    The holdout split of ``manifest["evaluation"]["validation"]``.
``folds(df, manifest) -> list[(train, test)]``
    Backtest folds (rolling-origin for time series, k-fold otherwise).
``fit(train, manifest, *, threads: int, log) -> model``
    The ``training`` stage: algorithm and hyper-parameters from its stage config.
    The LightGBM families' ``fit`` also takes ``callbacks`` (LightGBM callbacks, appended to
    each ``lightgbm.train``; ``lgb_watch``) and, where the family has no validation data of
    its own, ``valid`` (rows evaluated per iteration, never trained on): the pipeline records
    training curves with them, tuning prunes trials. They never change the trained model.
``evaluate(model, test, manifest) -> (metrics: dict[str, float], predictions: DataFrame, plot: dict)``
    The family's metrics (names from ``recipes.catalog.METRICS``), the holdout predictions
    and a small JSON-able dict of plot data for the run page.
``predict(model, rows: DataFrame) -> list``
    Predictions for rows with the training columns (validation of columns is the caller's):
    what ``POST /models/{id}/predict`` answers and what a score run writes.
``PREDICTION_COLUMN: str``
    The name of ``predict``'s values in a score run's predictions (as ``evaluate`` names them).
``save(model, directory: Path) -> list[str]`` / ``load(directory: Path) -> model``
    Persist without pickle (JSON, LightGBM model text).
``example_output(model, rows: DataFrame) -> dict``
    What the model returns for a few rows, for the recipe's synthetic example.
``log`` is a callable ``log(message: str)``.
"""

from __future__ import annotations

from types import ModuleType


def get_family(name: str) -> ModuleType:
    """The family module for a family key of ``recipes.catalog.FAMILIES`` (KeyError for an
    unknown family)."""
    # Each family module is imported on first use, not with this package: together they load
    # lightgbm and scikit-learn (~1.3 s on top of pandas), which every web process and command
    # that imports runs would pay at start-up; and they import stage_config from this package.
    match name:
        case "forecasting":
            from . import forecasting as family  # lazy: see above
        case "pricing":
            from . import pricing as family  # lazy: see above
        case "next_best_action":
            from . import next_best_action as family  # lazy: see above
        case "location_scoring":
            from . import location_scoring as family  # lazy: see above
        case _:
            raise KeyError(name)
    return family


def stage_config(manifest: dict, stage_type: str) -> dict:
    """The config of the first pipeline stage of ``stage_type`` (empty dict if none)."""
    for stage in manifest.get("pipeline", {}).get("stages", []):
        if stage.get("type") == stage_type:
            return stage.get("config") or {}
    return {}


def lgb_watch(callbacks, train_set, valid_set=None, name: str = "") -> dict:
    """Keyword arguments for ``lightgbm.train`` that report each boosting iteration's loss
    on the training data (``"train"``) and, when given, on validation data (``"valid"``) to
    ``callbacks``; ``name`` tells a family's boosters apart (``"train.treated"``). No
    callbacks: nothing is evaluated (no cost). Evaluating never changes what is trained (no
    early stopping here: a callback that stops training is the caller's choice)."""
    if not callbacks:
        return {}
    sets, names = [train_set], ["train"]
    if valid_set is not None:
        sets.append(valid_set)
        names.append("valid")
    if name:
        names = [f"{n}.{name}" for n in names]
    return {"valid_sets": sets, "valid_names": names, "callbacks": list(callbacks)}
