"""The task queues: kinds of background work, so that workers can be given some of them.

* ``training`` — train, eval, backtest and tune runs, and profiling large uploads: heavy, long.
* ``scoring`` — score runs (scheduled batch scoring and scoring started by hand).
* ``monitoring`` — the schedule itself (due checks, scorings, retrains and their decisions,
  run by the housekeeping tick of the workers that serve this queue) and what follows from
  it: webhook deliveries and e-mails.

A worker serves every queue by default (``manage.py worker``, ``WORKER_QUEUES=*``); giving
``--queues monitoring`` to one and ``--queues training,scoring`` to others keeps heavy training
from delaying scheduled checks. Plain Python: settings, tasks and the worker command read it.
"""

from __future__ import annotations

TRAINING, SCORING, MONITORING = "training", "scoring", "monitoring"
ALL = (TRAINING, SCORING, MONITORING)


def for_run_type(run_type: str) -> str:
    """The queue a run of this type is executed from."""
    return SCORING if run_type == "score" else TRAINING


def parse(text: str) -> tuple[str, ...]:
    """'*' or a comma-separated list of queue names -> the queues, in ALL's order.
    ValueError naming the unknown names and the known ones."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names:
        raise ValueError(f"no queue given: use '*' or some of {', '.join(ALL)}")
    if "*" in names:
        return ALL
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}: use '*' or some of {', '.join(ALL)}")
    return tuple(q for q in ALL if q in names)
