"""Reads of tune runs' studies: where Optuna keeps them (the workspace's own database, its own
tables, created on first use and not managed by Django's migrations), a tune run's study by
name (the id of the first tune run of its retry chain, so a retry continues the study its
predecessor left), and the study as the tune run's page and API show it.

The study is written by the tune run's child process (``runs.tuning.study_main``) and its
trials' child runs by the worker (``runs.tuning_executor``); ``runs.tuning_study`` is the
pure summary of a loaded study."""

from __future__ import annotations

import functools

import optuna
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from sqlalchemy.engine import URL

from mlworkspace.errors import NotFound

from . import tuning, tuning_study
from .models import Run, RunTag, RunType

# The Postgres connection options Django passes on that libpq understands as URL parameters.
_PG_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "options",
    "application_name",
    "connect_timeout",
)


def storage_url(alias: str = "default") -> str:
    """The SQLAlchemy URL of the workspace's database (the one Django uses now: under pytest,
    its test database), where Optuna keeps its studies."""
    connection = connections[alias]
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        options = db.get("OPTIONS") or {}
        return URL.create(
            "postgresql+psycopg",
            username=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            host=db.get("HOST") or None,
            port=int(db["PORT"]) if db.get("PORT") else None,
            database=db["NAME"],
            query={k: str(options[k]) for k in _PG_OPTIONS if k in options},
        ).render_as_string(hide_password=False)
    raise ImproperlyConfigured(f"Tune runs need SQLite or PostgreSQL, not {connection.vendor}.")


@functools.cache
def study_storage(url: str) -> optuna.storages.RDBStorage:
    # One storage per process and database for the pages' reads (its tables checked once),
    # holding no connection between requests.
    return tuning.storage(url, pooled=False)


def study_name(run: Run) -> str:
    """The study of a tune run: named after the first tune run of its retry chain, so a retry
    continues the study its predecessor left."""
    root, hops = run, 0
    while root.retry_of_id and hops < 1000:
        earlier = (
            Run.objects.filter(pk=root.retry_of_id, run_type=RunType.TUNE).only("id", "retry_of").first()
        )
        if earlier is None:
            break
        root, hops = earlier, hops + 1
    return root.id


def load_study(run: Run) -> optuna.Study | None:
    """The run's study as stored (None before its first trial was asked for)."""
    try:
        return optuna.load_study(study_name=study_name(run), storage=study_storage(storage_url()))
    except KeyError:
        return None


def tune_study(run: Run, study: optuna.Study | None = None) -> dict | None:
    """The study of a tune run (``study``: already loaded) as its page and API show it: every
    trial (with the id of its child run and the worker that ran it) and the best; None before the study has started."""
    study = study if study is not None else load_study(run)
    if study is None:
        return None
    data = tuning_study.summary(study)
    trial_runs = {
        number: (run_id, worker)
        for number, run_id, worker in RunTag.objects.filter(
            key="tune.trial", run__tag_rows__key="tune.study", run__tag_rows__value=study.study_name
        ).values_list("value", "run_id", "run__worker")
    }
    for row in data["trials"]:
        row["run_id"], row["worker"] = trial_runs.get(str(row["number"]), (None, None))
    return data


def get_tune_run(queryset, run_id: str) -> Run:
    """A tune run of ``queryset`` (the user's visible runs), or a 404 naming it."""
    run = queryset.select_related("recipe", "recipe_version").filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"Run '{run_id}' not found.", [{"path": "/id", "message": "unknown run"}])
    if run.run_type != RunType.TUNE:
        raise NotFound(
            f"Run '{run_id}' is a {run.run_type} run: only tune runs have a study.",
            [{"path": "/run_type", "message": f"{run.run_type}, not tune"}],
        )
    return run
