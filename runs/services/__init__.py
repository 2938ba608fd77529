"""Writes on runs and datasets, by concern (log lines are written by runs.logs):

* ``lifecycle``  a synthetic request resolved, a run started (numbered per recipe, enqueued
  for a worker on commit), retried, cancelled, dated for seeded history;
* ``finish``     the end of a run: the executor's ``run_finish`` and an external runner's
  ``run_report`` (outcome, final log line, stages closed, the result attached to its model);
* ``external``   an external run created with its results (tags, status, metrics) in one
  call: ``run_start`` and ``run_report`` composed;
* ``datasets``   upload and profile, the scoring-input mark, readiness, usage, delete;
* ``tracking``   a run's params, metrics (latest value and history) and tags as searchable
  rows (runs.tracking holds their rules);
* ``tuning``     a tune run's trial started by its worker (the one other way a run is created)
  and "Save best as new version".

Callers import from ``runs.services``; the names below are the package's interface.
"""

from .datasets import (
    dataset_create,
    dataset_delete,
    dataset_fail_stale_profiles,
    dataset_profile,
    dataset_require_ready,
    dataset_set_purpose,
    dataset_usage,
)
from .external import run_start_external
from .finish import close_stages, run_deploys, run_finish, run_report
from .lifecycle import (
    MAX_SYNTHETIC_ROWS,
    next_run_number,
    run_cancel,
    run_move_in_time,
    run_retry,
    run_start,
    synthetic_resolve,
)
from .tracking import tracking_index_metrics, tracking_index_params, tracking_log
from .tuning import trial_start, tune_save_best

__all__ = [
    "MAX_SYNTHETIC_ROWS",
    "close_stages",
    "dataset_create",
    "dataset_delete",
    "dataset_fail_stale_profiles",
    "dataset_profile",
    "dataset_require_ready",
    "dataset_set_purpose",
    "dataset_usage",
    "next_run_number",
    "run_cancel",
    "run_deploys",
    "run_finish",
    "run_move_in_time",
    "run_report",
    "run_retry",
    "run_start",
    "run_start_external",
    "synthetic_resolve",
    "tracking_index_metrics",
    "tracking_index_params",
    "tracking_log",
    "trial_start",
    "tune_save_best",
]
