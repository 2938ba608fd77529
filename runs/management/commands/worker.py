"""`manage.py worker`: the task worker (django-tasks-db's db_worker) plus housekeeping.

A worker serves the queues `--queues` (or WORKER_QUEUES) names: '*' (the default) or some of
training, scoring, monitoring (mlworkspace.queues). Two threads beside the task loop: the
reaper, every RUN_REAP_SECONDS, fails runs whose worker was lost (and closes their stages and
task rows) — kept apart from the slower housekeeping so a long monitoring check never delays
it; housekeeping, at start and then every WORKER_HOUSEKEEPING_SECONDS, sweeps what crashed
processes left behind (runs.housekeeping) and, on workers serving the monitoring queue, runs
the schedule (due checks, scorings, retrains) and sends the webhook deliveries that are due
(the retries, and any whose task has not run yet: notifications.delivery). Start as many
workers as you like, on one machine or many sharing one PostgreSQL database: every step is
safe to run from several at once.

SIGTERM or SIGINT (Ctrl-C) stops a worker gracefully: it takes no new task and exits once the
run it is executing has finished (django-tasks-db's db_worker). A run's child process has its
own process group, so a signal sent to the worker's whole group does not reach it (under
systemd, use KillMode=mixed: its default signals every process of the unit). A clean exit
removes the worker's heartbeat row. A second signal stops the worker without finishing its
run: the run's child process is stopped too, and the run is failed by another worker's reaper
after RUN_STALE_AFTER_SECONDS, as for a worker killed with SIGKILL.
"""

import logging
import threading
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from mlworkspace import queues
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


def housekeeping(served: tuple[str, ...] = queues.ALL) -> None:
    """What crashed processes left behind (every worker sweeps), and, on the workers that
    serve the monitoring queue, the schedule (due checks, scorings, retrains) and the webhook
    deliveries that are due."""
    close_old_connections()
    steps = [sweep_orphans]
    if queues.MONITORING in served:
        steps += [run_due_checks, deliver_due]
    for step in steps:
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
        parser.add_argument(
            "--queues",
            default=None,
            help=f"The queues to serve: '*' (all) or some of {','.join(queues.ALL)}, comma-separated "
            "(default: WORKER_QUEUES, '*').",
        )

    def handle(self, *args, **options):
        text = options["queues"] if options["queues"] is not None else settings.WORKER_QUEUES
        try:
            served = queues.parse(text)
        except ValueError as exc:
            raise CommandError(f"--queues: {exc}") from None
        # "This worker is alive", for /healthz and /metrics (idle or busy; see mlworkspace/health.py).
        heartbeat = WorkerHeartbeatThread(queues=served).start()
        try:
            self._work(options, served)
        finally:
            heartbeat.stop()

    def _work(self, options, served: tuple[str, ...]):
        if not options["no_housekeeping"]:
            reap()
            housekeeping(served)
            _every(settings.RUN_REAP_SECONDS, reap, "reaper")
            _every(settings.WORKER_HOUSEKEEPING_SECONDS, lambda: housekeeping(served), "housekeeping")
        call_command(
            "db_worker",
            # '*' also serves task rows enqueued before the queues existed (queue "default").
            queue_name="*" if served == queues.ALL else ",".join(served),
            interval=options["interval"],
            startup_delay=False,
            reload=False,
            verbosity=options["verbosity"],
        )
