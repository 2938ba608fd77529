"""Synthetic worlds that continue in time (plain Python, no Django).

Each family's generator is a *world*: the seed fixes its entities (products and stores,
series, customers, candidate sites) and the ground truth; a *window* picks the periods a
batch covers. A training batch of ``rows`` rows is the world's first window (the family's
``layout(rows)`` says how big the world and that window are); the batch for an eval run,
a monitoring check or scoring of a trained model continues *after* its training data, in
the same world, so a model checked on data like the data it learned from stays healthy.
Drift is only what is injected on purpose: ``shift`` (covariate drift, applied by
``monitoring.drift.shift_batch``) and ``concept`` (a named change of the ground truth,
``family.CONCEPTS``), which, once it happened, the world's later windows keep.

A synthetic request (run ``params["synthetic"]``, a check's ``synthetic``) may carry
``rows``, ``seed``, ``start`` (ISO date of the window's first period), ``periods``,
``concept`` and ``shift``. :func:`resolve` turns it into the *resolved* batch that is
recorded with the run or snapshot::

    {"rows": 4850, "seed": 1, "world": {"products": 97, "stores": 10},
     "window": {"start": "2024-01-01", "end": "2024-02-04", "periods": 5, "unit": "week"},
     "concept": None, "shift": {}}

so the next window can always be computed from what was recorded. Every family module
provides ``ORIGIN`` (date of period 0), ``PERIOD_DAYS`` (7 or 1), ``CONCEPTS`` (name ->
description), ``layout(rows) -> (world, periods)``, ``window_periods(world, rows)``,
``window_rows(world, periods, rows)``, ``describe_world(world)`` and ``generate(rows, seed, *, world=None, window=None,
concept=None)``.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd

# A continuation batch with no row count given (an eval run, a default check) has this many
# rows (about; panel families round to whole periods of all their entities).
DEFAULT_BATCH_ROWS = 5000
REQUEST_KEYS = ("rows", "seed", "start", "periods", "concept", "shift")
RESOLVED_KEYS = ("world", "window")


class Calendar(NamedTuple):
    """What the window helpers need of a family (a family module has the same attributes)."""

    ORIGIN: str
    PERIOD_DAYS: int


class WorldError(ValueError):
    """A synthetic request that cannot be resolved; ``field`` names the offending key."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _origin(family) -> date:
    return pd.Timestamp(family.ORIGIN).date()


def unit(family) -> str:
    return "week" if int(family.PERIOD_DAYS) == 7 else "day"


def period_index(family, start) -> int:
    """The period index of a window start (an index, a date or an ISO date string); a date
    inside a period counts as that period."""
    if isinstance(start, bool):
        raise WorldError("start", "must be a date (YYYY-MM-DD)")
    if isinstance(start, int):
        if start < 0:
            raise WorldError("start", "must not be negative")
        return start
    try:
        day = pd.Timestamp(start).date()
    except (ValueError, TypeError):
        raise WorldError("start", f"must be a date (YYYY-MM-DD), got {start!r}") from None
    offset = (day - _origin(family)).days
    if offset < 0:
        raise WorldError("start", f"must be on or after {_origin(family).isoformat()}, when the world begins")
    return offset // int(family.PERIOD_DAYS)


def span(family, window: dict) -> tuple[int, int]:
    """(first period index, number of periods) of a window ``{"start", "periods"}``."""
    start = period_index(family, window.get("start", 0))
    periods = window.get("periods")
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
        raise WorldError("periods", "must be a positive integer")
    return start, periods


def window_dict(family, start: int, periods: int) -> dict:
    step = int(family.PERIOD_DAYS)
    first = _origin(family) + timedelta(days=start * step)
    last = first + timedelta(days=periods * step - 1)
    return {
        "start": first.isoformat(),
        "end": last.isoformat(),
        "periods": int(periods),
        "unit": unit(family),
    }


def _int(request: dict, key: str, minimum: int) -> int | None:
    value = request.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WorldError(key, f"must be an integer of at least {minimum}")
    return value


def is_resolved(synthetic: dict | None) -> bool:
    return bool(synthetic) and all(k in synthetic for k in RESOLVED_KEYS)


def resolve(family, request: dict | None, *, after: dict | None = None) -> dict:
    """The resolved batch of a synthetic request (see the module docstring).

    ``after``: the synthetic batch (resolved or a bare ``{"rows", "seed"}``) the new batch
    continues — a model's training data, or the last batch checked. Without a ``seed`` of
    its own (or with the same one) the request stays in that world and, without a
    ``start``, takes the next window. Another seed is another world, which starts at its
    beginning. Raises :class:`WorldError` naming the bad key."""
    request = dict(request or {})
    unknown = [k for k in request if k not in (*REQUEST_KEYS, *RESOLVED_KEYS)]
    if unknown:
        raise WorldError(unknown[0], f"unknown key; use {', '.join(REQUEST_KEYS)}")
    rows = _int(request, "rows", 1)
    seed = _int(request, "seed", 0)
    periods = _int(request, "periods", 1)
    concept = request.get("concept") or None
    # A concept change is an event in the world's timeline: a window continuing a batch that
    # had one keeps it, unless the request names its own ("concept": null restores the
    # original ground truth).
    inherited = (after or {}).get("concept") if "concept" not in request else None
    if concept is not None and concept not in family.CONCEPTS:
        choices = ", ".join(family.CONCEPTS)
        raise WorldError("concept", f"unknown concept change {concept!r} for {family.NAME}; choose {choices}")
    shift = request.get("shift") or {}
    if not isinstance(shift, dict):
        raise WorldError("shift", 'must be an object like {"price": 1.5}')
    if after is not None and not is_resolved(after):
        after = resolve(family, {k: after.get(k) for k in ("rows", "seed") if after.get(k) is not None})
    if is_resolved(request):  # a recorded batch (a retried run) keeps its own window
        request.setdefault("start", request["window"].get("start"))
        periods = periods or request["window"].get("periods")
    start = None if request.get("start") in (None, "") else period_index(family, request["start"])
    if after is not None and (seed is None or seed == after["seed"]):
        seed, world = int(after["seed"]), dict(after["world"])
        concept = concept or inherited
        periods = periods or family.window_periods(world, rows or DEFAULT_BATCH_ROWS)
        if start is None:
            start = span(family, after["window"])[0] + span(family, after["window"])[1]
        rows = family.window_rows(world, periods, rows)
    elif is_resolved(request):
        seed, world = int(seed or 0), dict(request["world"])
        rows = rows or family.window_rows(world, periods, None)
    else:
        seed = 0 if seed is None else seed
        base_rows = rows or family.DEFAULT_ROWS
        world, first = family.layout(base_rows)
        if start is None and periods is None:
            start, periods, rows = 0, first, base_rows
        else:
            start, periods = start or 0, periods or first
            rows = family.window_rows(world, periods, rows)
    window = window_dict(family, start, periods)
    return {
        "rows": int(rows),
        "seed": int(seed),
        "world": world,
        "window": window,
        "concept": concept,
        "shift": {str(k): float(v) for k, v in shift.items()},
    }


def lookup(values, mapping: dict) -> np.ndarray:
    """``pd.Series(values).map(mapping).to_numpy(dtype=float)`` (NaN where a value is not a
    key) for the generators' string -> number tables, without mapping each of a million
    strings through a dict (the same floats, a few times faster)."""
    table = np.array([*mapping.values(), np.nan], dtype=float)
    keys = pd.Index(list(mapping), dtype=object)
    return table[keys.get_indexer(pd.Index(np.asarray(values, dtype=object), dtype=object))]


def generate(family, resolved: dict, manifest: dict | None = None) -> pd.DataFrame:
    """The frame of a resolved batch (``shift`` is not applied here: it needs the model's
    reference profile, see ``monitoring.drift.shift_batch``). ``manifest``: the recipe the
    batch is for, when the family generates its world the way a recipe asks (a family's
    ``generate_options(manifest)``: an hourly forecasting recipe gets the world hour by hour)."""
    options = family.generate_options(manifest) if manifest and hasattr(family, "generate_options") else {}
    return family.generate(
        resolved["rows"],
        resolved["seed"],
        world=resolved["world"],
        window=resolved["window"],
        concept=resolved.get("concept"),
        **options,
    )


def describe(family, resolved: dict) -> str:
    """One line for people: which world and window a batch comes from."""
    window = resolved["window"]
    units = f"{window['periods']} {window['unit']}{'s' if window['periods'] != 1 else ''}"
    text = (
        f"World seed {resolved['seed']} ({family.describe_world(resolved['world'])}), "
        f"{units} {window['start']} – {window['end']}, {resolved['rows']:,} rows"
    )
    if resolved.get("concept"):
        text += f"; concept change: {resolved['concept']}"
    if resolved.get("shift"):
        text += "; shifted: " + ", ".join(f"{k} by {v:g}" for k, v in resolved["shift"].items())
    return text


def concept_choices(family) -> list[tuple[str, str]]:
    """A family's concept changes as form choices: (name, words)."""
    return [(name, name.replace("_", " ")) for name in family.CONCEPTS]


def concepts_help(family) -> str:
    """What each concept change does, in one line (the forms' help text)."""
    return " ".join(
        f"{name.replace('_', ' ').capitalize()}: {text}." for name, text in family.CONCEPTS.items()
    )
