"""The predict endpoint while an experiment runs: rows routed by unit, the exposures
recorded (experiment_predict, called by the predict action of models_registry/api.py)."""

from __future__ import annotations

import json
import logging
import re
from itertools import chain

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from mlworkspace.errors import DomainError, InvalidInput
from models_registry.models import MLModel
from runs import artifacts

from ..assignment import assign_arm
from ..models import Arm, Experiment, ExperimentMode, ExperimentStatus, Exposure
from .values import MAX_ERRORS, finite, unit_value

log = logging.getLogger(__name__)

_ROW_PATH = re.compile(r"^/rows/(\d+)(/.*)?$")


def running_experiment(model: MLModel) -> Experiment | None:
    """The running experiment in which `model` is the champion or the challenger (one query;
    the recipe's partial unique index finds it)."""
    found = list(
        Experiment.objects.filter(recipe_id=model.recipe_id, status=ExperimentStatus.RUNNING)
        .filter(Q(champion_id=model.pk) | Q(challenger_id=model.pk))
        .select_related("champion__recipe", "challenger__recipe")[:1]
    )
    return found[0] if found else None


def _units(rows: list[dict], unit_key: str) -> list[str]:
    units, errors = [], []
    for index, row in enumerate(rows):
        unit = unit_value(row.get(unit_key))
        if unit is None:
            message = (
                f"missing: the running experiment assigns arms by {unit_key}"
                if unit_key not in row
                else "must be a non-empty string (at most 200 characters) or an integer"
            )
            errors.append({"path": f"/rows/{index}/{unit_key}", "message": message})
            if len(errors) >= MAX_ERRORS:
                break
        else:
            units.append(unit)
    if errors:
        first = errors[0]
        raise InvalidInput(f"{first['path']}: {first['message']}", errors)
    return units


def _renumbered(exc: InvalidInput, index: list[int]) -> InvalidInput:
    """The error of a subset of the rows with its paths naming the rows of the request."""

    def fix(path: str) -> str:
        match = _ROW_PATH.match(path or "")
        if not match or int(match.group(1)) >= len(index):
            return path
        return f"/rows/{index[int(match.group(1))]}{match.group(2) or ''}"

    errors = [{**e, "path": fix(e.get("path", ""))} for e in exc.errors]
    detail = f"{errors[0]['path']}: {errors[0]['message']}" if errors else exc.detail
    return InvalidInput(detail, errors)


def _predict(model: MLModel, rows: list[dict], index: list[int] | None = None) -> list:
    try:
        return artifacts.predict_rows(model, rows)
    except InvalidInput as exc:
        raise _renumbered(exc, index) if index is not None else exc from None


# Rows per INSERT statement when recording exposures (at most 7 parameters each: well under
# SQLite's 32,766 and PostgreSQL's 65,535 parameters per statement).
EXPOSURE_CHUNK = 1000


def _record_exposures(
    experiment: Experiment, units: list[str], arms: list[str], champion=None, challenger=None
) -> None:
    """One row per unit (its first request's time; in shadow mode the latest predictions of
    both models, updated on every request). Multi-row INSERT ... ON CONFLICT statements
    (SQLite and PostgreSQL alike), not bulk_create: building 50,000 model instances and their
    SQL through the ORM took 2 s of a 2.5 s batch request (bench/bench_experiments.py); this
    takes about a tenth. Concurrent requests for a new unit collide harmlessly on the unique
    (experiment, unit) index: the arm is the same whoever writes it."""
    last = {unit: i for i, unit in enumerate(units)}  # a unit twice in one request: its last row
    # In unit order: two concurrent requests with overlapping units wait for each other's rows
    # in the same order on PostgreSQL, never in a deadlock.
    last = dict(sorted(last.items()))
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    quote = connection.ops.quote_name
    columns = ["experiment_id", "unit", "arm", "first_seen_at"]
    if champion is None:
        values = [(experiment.pk, unit, arms[i], now) for unit, i in last.items()]
        conflict = "DO NOTHING"
    else:
        updated = ["last_seen_at", "champion_prediction", "challenger_prediction"]
        columns += updated
        values = [
            (experiment.pk, unit, arms[i], now, now, finite(champion[i]), finite(challenger[i]))
            for unit, i in last.items()
        ]
        conflict = "DO UPDATE SET " + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in updated)
    table = quote(Exposure._meta.db_table)
    tail = f" ON CONFLICT ({quote('experiment_id')}, {quote('unit')}) {conflict}"
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement over one JSON document of the rows: psycopg binds parameters on the
            # client, and quoting 50,000 units (or arrays of them) in Python took longer than
            # PostgreSQL takes to write them; json.dumps is C.
            casts = [
                "%s",
                "e->>0",
                "e->>1",
                "%s::timestamptz",
                "%s::timestamptz",
                "(e->>2)::float8",
                "(e->>3)::float8",
            ]
            payload = [[v[1], v[2], *v[5:]] for v in values]
            params = [experiment.pk, now] + ([now] if len(columns) > 4 else [])
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "
                f"SELECT {', '.join(casts[: len(columns)])} FROM json_array_elements(%s::json) AS e{tail}",
                [*params, json.dumps(payload)],
            )
            return
        head = f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) VALUES "
        row = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for start in range(0, len(values), EXPOSURE_CHUNK):
            chunk = values[start : start + EXPOSURE_CHUNK]
            cursor.execute(head + ", ".join([row] * len(chunk)) + tail, list(chain.from_iterable(chunk)))


def experiment_predict(model: MLModel, rows: list[dict]) -> dict:
    """The predict endpoint's answer. Without a running experiment of `model`: its
    predictions, unchanged. With one (model is its champion or challenger): A/B — each row is
    served by its unit's arm; shadow — the champion answers every row and the challenger's
    answers for the same rows are stored. Adds "experiment_id", "mode", "arms" (parallel to
    "predictions") and "arm" when every row has the same one."""
    experiment = running_experiment(model)
    if experiment is None:
        return {"model_id": model.pk, "predictions": artifacts.predict_rows(model, rows)}
    units = _units(rows, experiment.unit_key)
    if experiment.mode == ExperimentMode.AB:
        arms = [assign_arm(experiment.pk, unit, experiment.split) for unit in units]
        predictions: list = [None] * len(rows)
        for arm in (Arm.CHAMPION, Arm.CHALLENGER):
            index = [i for i, a in enumerate(arms) if a == arm]
            if not index:
                continue
            subset = rows if len(index) == len(rows) else [rows[i] for i in index]
            served = _predict(experiment.model_of(arm), subset, index)
            for i, prediction in zip(index, served, strict=True):
                predictions[i] = prediction
        _record_exposures(experiment, units, arms)
    else:
        predictions = _predict(experiment.champion, rows)
        try:
            shadow = _predict(experiment.challenger, rows)
        except DomainError as exc:
            # The shadow never changes the champion's answer: its failure is recorded (null
            # challenger predictions, counted on the experiment page) and logged.
            log.warning(
                "experiment %s: the challenger could not score %d rows: %s",
                experiment.pk,
                len(rows),
                exc.detail,
            )
            shadow = [None] * len(rows)
        arms = [Arm.CHAMPION.value] * len(rows)
        _record_exposures(experiment, units, arms, predictions, shadow)
    out = {
        "model_id": model.pk,
        "predictions": predictions,
        "experiment_id": experiment.pk,
        "mode": experiment.mode,
        "arms": arms,
        "models": {
            Arm.CHAMPION.value: experiment.champion_id,
            Arm.CHALLENGER.value: experiment.challenger_id,
        },
    }
    if len(set(arms)) == 1:
        out["arm"] = arms[0]
    return out
