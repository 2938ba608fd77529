"""The training stage's ``distributed`` switch: train on an existing Dask cluster (issue #16 §3).

Plain Python (no Django import): the manifest validator (``recipes.manifest``) checks it here,
``runs.services.run_start`` refuses a train run asking for it when the server has no
``DASK_SCHEDULER_ADDRESS``, and the pipeline reads it with ``requested``.

    pipeline.stages[type=training].config.distributed: "dask"

Only the LightGBM families whose rows are independent can train this way (``FAMILIES``):
their boosters train on every row of the dataset through ``lightgbm.dask`` (``runs.distributed``).
Pricing fits per-product elasticities and forecasting per-series models and lag features that
need each series whole in one process, which a row-partitioned cluster cannot give them.
Absent (or null): the run trains in its own process, as always. Changing it is a patch (a
setting inside a stage config: ``recipes.lineage``), since the model is the same model.
"""

from __future__ import annotations

from typing import Any

from .forecasting_config import installed as package_installed  # the one find_spec check

BACKENDS = ("dask",)
FAMILIES = ("location_scoring", "next_best_action")
# Why the other families refuse it, in the 400's words.
_REFUSED = {
    "pricing": "pricing fits each product's price response on all of its rows in one process",
    "forecasting": "forecasting models each series whole (lags, seasonality) in one process",
}
# The packages the switch needs, and how to get them.
PACKAGES = ("distributed", "dask")
INSTALL = "pip install 'dask[distributed]' (it is in requirements.txt)"

Path_ = tuple[str | int, ...]


def _stages(manifest: Any) -> list:
    pipeline = manifest.get("pipeline") if isinstance(manifest, dict) else None
    stages = pipeline.get("stages") if isinstance(pipeline, dict) else None
    return stages if isinstance(stages, list) else []


def requested(manifest: Any) -> str | None:
    """The backend the training stage asks for (``"dask"``), or None: it trains locally."""
    for stage in _stages(manifest):
        if isinstance(stage, dict) and stage.get("type") == "training":
            config = stage.get("config")
            value = config.get("distributed") if isinstance(config, dict) else None
            return value if value in BACKENDS else None
    return None


def switch_path(manifest: Any) -> str:
    """Where the switch is, for messages: ``pipeline.stages[2].config.distributed``."""
    for index, stage in enumerate(_stages(manifest)):
        if isinstance(stage, dict) and stage.get("type") == "training":
            return f"pipeline.stages[{index}].config.distributed"
    return "pipeline.stages[training].config.distributed"


def installed() -> bool:
    """Whether dask and distributed can be imported (without importing them)."""
    return all(package_installed(module) for module in PACKAGES)


def check(manifest: dict, family: str | None, clean) -> list[tuple[Path_, str]]:
    """Problems of every stage's ``config.distributed``: [(path, message)]. ``clean(path)`` says
    whether the schema found nothing wrong there."""
    errors: list[tuple[Path_, str]] = []
    for index, stage in enumerate(_stages(manifest)):
        if not isinstance(stage, dict) or not isinstance(stage.get("config"), dict):
            continue
        if "distributed" not in stage["config"]:
            continue
        path: Path_ = ("pipeline", "stages", index, "config", "distributed")
        value = stage["config"]["distributed"]
        if not clean(path):
            continue
        if stage.get("type") != "training":
            errors.append(
                (
                    path,
                    f"'distributed' belongs in the training stage's config, not in a '{stage.get('type')}' stage",
                )
            )
        elif value is None:
            continue
        elif value not in BACKENDS:
            errors.append(
                (
                    path,
                    f"'distributed' must be {' or '.join(repr(b) for b in BACKENDS)} (or absent), not {value!r}",
                )
            )
        elif family is not None and family not in FAMILIES:
            why = _REFUSED.get(family, f"the {family} family does not support it")
            errors.append(
                (
                    path,
                    f"distributed training is for the {' and '.join(FAMILIES)} families only: {why}",
                )
            )
        elif not installed():
            errors.append(
                (
                    path,
                    f"'{value}' needs the dask and distributed packages, which are not installed: {INSTALL}",
                )
            )
    return errors
