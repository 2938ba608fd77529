"""`manage.py worker`: the task worker (django-tasks-db's db_worker) plus housekeeping.

Two threads beside the task loop: the reaper, every RUN_REAP_SECONDS, fails runs whose worker
was lost (and closes their stages and task rows) — kept apart from the slower housekeeping so
a long monitoring check never delays it; housekeeping, at start and then every
WORKER_HOUSEKEEPING_SECONDS, runs due monitoring checks, sweeps what crashed processes
left behind (runs.housekeeping) and sends the webhook deliveries that are due (the retries, and
any whose task has not run yet: notifications.delivery). Start as many workers as you like, on
one machine or many sharing one PostgreSQL database: every step is safe to run from several at once.
"""

import logging
import threading
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from mlworkspace.health import WorkerHeartbeatThread
from monitoring.scheduler import run_due_checks
from notifications.delivery import deliver_due
from runs.executor import reap_stale_runs
from runs.housekeeping import sweep_orphans

logger = logging.getLogger(__name__)


def reap() -> None:
    close_old_connections()
    try:
        reap_stale_runs()
    except Exception:  # keep the worker alive; the next round retries
        logger.exception("reaper failed")
    finally:
        close_old_connections()


def housekeeping() -> None:
    close_old_connections()
    for step in (sweep_orphans, run_due_checks, deliver_due):
        try:
            step()
        except Exception:  # keep the worker alive; the next round retries
            logger.exception("housekeeping step %s failed", step.__name__)
    close_old_connections()


def _every(seconds: float, step, name: str) -> None:
    def loop():
        while True:
            time.sleep(seconds)
            step()

    threading.Thread(target=loop, name=name, daemon=True).start()


class Command(BaseCommand):
    help = "Run background work: training runs (db_worker) plus the reaper and scheduled monitoring checks."

    def add_arguments(self, parser):
        parser.add_argument("--no-housekeeping", action="store_true", help="Only execute tasks.")
        parser.add_argument("--interval", type=float, default=0.5, help="Seconds between queue polls.")

    def handle(self, *args, **options):
        # "This worker is alive", for /healthz and /metrics (idle or busy; see mlworkspace/health.py).
        heartbeat = WorkerHeartbeatThread().start()
        try:
            self._work(options)
        finally:
            heartbeat.stop()

    def _work(self, options):
        if not options["no_housekeeping"]:
            reap()
            housekeeping()
            _every(settings.RUN_REAP_SECONDS, reap, "reaper")
            _every(settings.WORKER_HOUSEKEEPING_SECONDS, housekeeping, "housekeeping")
        call_command(
            "db_worker",
            interval=options["interval"],
            startup_delay=False,
            reload=False,
            verbosity=options["verbosity"],
        )
