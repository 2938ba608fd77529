"""Outcomes posted per unit: validated, joined to the units' exposures, upserted."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, InvalidInput, field_error

from ..models import Experiment, Exposure, Outcome
from .values import MAX_ERRORS, finite, unit_value

UNKNOWN_EXAMPLES = 10
# Units per query when looking rows up by unit (SQLite allows 32,766 parameters per statement).
LOOKUP_CHUNK = 5000


def _chunks(items: list, size: int = LOOKUP_CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def parse_outcomes(items) -> list[tuple[str, float]]:
    """[(unit, value)] from the request's `outcomes`, or a 400 naming each bad field
    (`/outcomes/<i>/value`, ...; at most 50)."""
    if not isinstance(items, list):
        raise field_error("outcomes", 'must be a list of {"unit": ..., "value": ...}')
    if not items:
        raise field_error("outcomes", "must not be empty")
    limit = settings.OUTCOMES_MAX_ROWS
    if len(items) > limit:
        raise InvalidInput(
            f"At most {limit} outcomes per request; got {len(items)}.",
            [{"path": "/outcomes", "message": f"more than {limit} outcomes"}],
        )
    parsed, errors = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"path": f"/outcomes/{index}", "message": 'must be an object {"unit", "value"}'})
        else:
            for key in sorted(set(item) - {"unit", "value"}):
                errors.append({"path": f"/outcomes/{index}/{key}", "message": "unknown field"})
            unit = unit_value(item.get("unit"))
            if unit is None:
                message = (
                    "is required"
                    if "unit" not in item
                    else "must be a non-empty string (at most 200 characters, no NUL) or an integer"
                )
                errors.append({"path": f"/outcomes/{index}/unit", "message": message})
            value = item.get("value")
            if "value" not in item:
                errors.append({"path": f"/outcomes/{index}/value", "message": "is required"})
            elif finite(value) is None:
                errors.append(
                    {"path": f"/outcomes/{index}/value", "message": f"must be a number, got {value!r:.40}"}
                )
            elif unit is not None:
                parsed.append((unit, finite(value)))
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        first = errors[0]
        raise InvalidInput(f"{first['path']}: {first['message']}", errors)
    return parsed


@transaction.atomic
def experiment_outcomes(*, experiment: Experiment, outcomes, user, at: datetime | None = None) -> dict:
    """Record the outcome of each exposed unit (last write wins). Units the experiment never
    exposed are counted and the first few named in the answer, never silently dropped. `at`
    (a datetime) dates the outcomes and their audit event for seeded history (the demo),
    default now."""
    # Locked and re-read: a stop that just committed is seen, one under way waits for us.
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if not experiment.is_running:
        raise Conflict(
            f"Experiment '{experiment.pk}' is stopped: it takes no more outcomes.",
            [{"path": "/outcomes", "message": "the experiment is stopped"}],
        )
    parsed = parse_outcomes(outcomes)
    latest = dict(parsed)  # a unit posted twice in one request: its last value
    units = list(latest)
    arms: dict[str, str] = {}
    replaced = 0
    for chunk in _chunks(units):
        arms.update(
            Exposure.objects.filter(experiment_id=experiment.pk, unit__in=chunk).values_list("unit", "arm")
        )
        replaced += Outcome.objects.filter(experiment_id=experiment.pk, unit__in=chunk).count()
    now = at or timezone.now()
    rows = [
        Outcome(experiment_id=experiment.pk, unit=unit, arm=arms[unit], value=value, recorded_at=now)
        for unit, value in sorted(latest.items())  # in key order: concurrent posts never deadlock
        if unit in arms
    ]
    Outcome.objects.bulk_create(
        rows,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["experiment", "unit"],
        update_fields=["value", "recorded_at"],
    )
    unknown = [unit for unit in units if unit not in arms]
    result = {
        "experiment_id": experiment.pk,
        "received": len(parsed),
        "recorded": len(rows),
        "replaced": replaced,
        "duplicates": len(parsed) - len(latest),
        "unknown_units": len(unknown),
        "unknown_examples": unknown[:UNKNOWN_EXAMPLES],
    }
    audit.record(user, "experiment.outcomes", experiment, detail=result, at=at)
    return result
