"""The predict endpoint while an experiment runs: rows routed by unit, the exposures
recorded (experiment_predict, called by the predict action of models_registry/api.py)."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from itertools import chain

import numpy as np
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from mlworkspace.errors import DomainError, InvalidInput
from models_registry.models import MLModel
from runs import artifacts

from ..assignment import challenger_mask
from ..models import Arm, Experiment, ExperimentMode, ExperimentStatus, Exposure
from .values import MAX_ERRORS, finite_all, unit_value, unit_values

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
    units = unit_values([row.get(unit_key) for row in rows])
    if units is not None:
        return units
    errors = []
    for index, row in enumerate(rows):
        if unit_value(row.get(unit_key)) is None:
            message = (
                f"missing: the running experiment assigns arms by {unit_key}"
                if unit_key not in row
                else "must be a non-empty string (at most 200 characters, no NUL) or an integer"
            )
            errors.append({"path": f"/rows/{index}/{unit_key}", "message": message})
            if len(errors) >= MAX_ERRORS:
                break
    first = errors[0]
    raise InvalidInput(f"{first['path']}: {first['message']}", errors)


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


# Rows per INSERT statement when recording exposures on SQLite (at most 4 parameters each:
# well under its 32,766 parameters per statement).
EXPOSURE_CHUNK = 1000


def _record_exposures(
    experiment: Experiment,
    units: list[str],
    arms: list[str],
    champion=None,
    challenger=None,
    *,
    at: datetime | None = None,
) -> None:
    """One row per unit (its first request's time: `at`, default now; in shadow mode the
    latest predictions of both models and their time, updated on every request), written by
    INSERT ... SELECT ... ON CONFLICT statements, not bulk_create: building 50,000 model
    instances and their SQL through the ORM took 2 s of a 2.5 s batch request
    (bench/bench_experiments.py); this takes about a tenth. The experiment and the time are
    bound once per statement, the rows' own values (unit, arm[, both answers]) are built
    column by column with C-level maps and zips. Concurrent requests for a new unit collide
    harmlessly on the unique (experiment, unit) index: the arm is the same whoever writes it."""
    last = dict(zip(units, range(len(units)), strict=True))  # a unit twice: its last row
    # In unit order: two concurrent requests with overlapping units wait for each other's rows
    # in the same order on PostgreSQL, never in a deadlock.
    ordered = sorted(last)
    index = list(map(last.__getitem__, ordered))
    seen = connection.ops.adapt_datetimefield_value(at or timezone.now())
    quote = connection.ops.quote_name
    columns = ["experiment_id", "unit", "arm", "first_seen_at"]
    params = [experiment.pk, seen]
    sent = [ordered, list(map(arms.__getitem__, index))]
    postgres = ["%s", "e->>0", "e->>1", "%s::timestamptz"]
    sqlite = ["%s", "column1", "column2", "%s"]
    if champion is None:
        conflict = "DO NOTHING"
    else:
        updated = ["last_seen_at", "champion_prediction", "challenger_prediction"]
        columns += updated
        params.append(seen)
        sent += [finite_all(list(map(answers.__getitem__, index))) for answers in (champion, challenger)]
        postgres += ["%s::timestamptz", "(e->>2)::float8", "(e->>3)::float8"]
        sqlite += ["%s", "column3", "column4"]
        conflict = "DO UPDATE SET " + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in updated)
    head = f"INSERT INTO {quote(Exposure._meta.db_table)} ({', '.join(quote(c) for c in columns)}) SELECT "
    tail = f" ON CONFLICT ({quote('experiment_id')}, {quote('unit')}) {conflict}"
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement over one JSON document of the rows: psycopg binds parameters on the
            # client, and quoting 50,000 units (or arrays of them) in Python took longer than
            # PostgreSQL takes to write them; json.dumps is C. jsonb, not json: parsed once,
            # its elements' fields are then read without parsing each element's text again
            # for every ->> (50,000 rows: ~45 ms instead of ~90 ms in the database).
            cursor.execute(
                f"{head}{', '.join(postgres)} FROM jsonb_array_elements(%s::jsonb) AS e{tail}",
                [*params, json.dumps(list(zip(*sent, strict=True)))],
            )
            return
        # SQLite: multi-row VALUES, EXPOSURE_CHUNK rows per statement (its grammar wants a
        # WHERE before ON CONFLICT in INSERT ... SELECT). The constants bound once mean fewer
        # parameters, and fewer %s for Django to turn into ? with a regex over the text.
        row = "(" + ", ".join(["%s"] * len(sent)) + ")"
        values = list(zip(*sent, strict=True))
        for start in range(0, len(values), EXPOSURE_CHUNK):
            chunk = values[start : start + EXPOSURE_CHUNK]
            cursor.execute(
                f"{head}{', '.join(sqlite)} FROM (VALUES {', '.join([row] * len(chunk))}) WHERE true{tail}",
                [*params, *chain.from_iterable(chunk)],
            )


def experiment_predict(model: MLModel, rows: list[dict], *, at: datetime | None = None) -> dict:
    """The predict endpoint's answer. Without a running experiment of `model`: its
    predictions, unchanged. With one (model is its champion or challenger): A/B — each row is
    served by its unit's arm; shadow — the champion answers every row and the challenger's
    answers for the same rows are stored. Adds "experiment_id", "mode", "arms" (parallel to
    "predictions") and "arm" when every row has the same one. `at` (a datetime) dates the
    exposures for seeded history (the demo), default now."""
    experiment = running_experiment(model)
    if experiment is None:
        return {"model_id": model.pk, "predictions": artifacts.predict_rows(model, rows)}
    units = _units(rows, experiment.unit_key)
    if experiment.mode == ExperimentMode.AB:
        challenger = challenger_mask(experiment.pk, units, experiment.split)
        arms = np.where(challenger, Arm.CHALLENGER.value, Arm.CHAMPION.value).tolist()
        predictions: list = [None] * len(rows)
        for arm, mask in ((Arm.CHAMPION, ~challenger), (Arm.CHALLENGER, challenger)):
            index = np.flatnonzero(mask).tolist()
            if not index:
                continue
            subset = rows if len(index) == len(rows) else list(map(rows.__getitem__, index))
            served = _predict(experiment.model_of(arm), subset, index)
            for i, prediction in zip(index, served, strict=True):
                predictions[i] = prediction
        _record_exposures(experiment, units, arms, at=at)
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
        _record_exposures(experiment, units, arms, predictions, shadow, at=at)
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
