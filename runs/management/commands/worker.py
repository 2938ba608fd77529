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

`--concurrency N` (or WORKER_CONCURRENCY) makes the command a supervisor of N worker processes,
each executing one task at a time (only the first does housekeeping): N tasks at once under one
command, e.g. one per core of a machine. It passes a stop signal on to them, restarts one that
died, and exits once all have stopped.

SIGTERM or SIGINT (Ctrl-C) stops a worker gracefully: it takes no new task and exits once the
run it is executing has finished (django-tasks-db's db_worker). A run's child process has its
own process group, so a signal sent to the worker's whole group does not reach it (under
systemd, use KillMode=mixed: its default signals every process of the unit). A clean exit
removes the worker's heartbeat row. A second signal stops the worker without finishing its
run: the run's child process is stopped too, and the run is failed by another worker's reaper
after RUN_STALE_AFTER_SECONDS, as for a worker killed with SIGKILL.
"""

import logging
import signal
import subprocess
import sys
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
            "--concurrency",
            type=int,
            default=None,
            help="Tasks executed at once: that many worker processes under this one (default: "
            "WORKER_CONCURRENCY, 1).",
        )
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
        concurrency = (
            options["concurrency"] if options["concurrency"] is not None else settings.WORKER_CONCURRENCY
        )
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise CommandError(f"--concurrency: must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
        if concurrency > 1:
            return Supervisor(concurrency, served, options).run()
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


MAX_CONCURRENCY = 64
RESTART_DELAY_SECONDS = 1.0


class Supervisor:
    """N worker processes (`manage.py worker` with concurrency 1) under one command."""

    def __init__(self, count: int, served: tuple[str, ...], options: dict):
        self.count, self.options = count, options
        self.queues = "*" if served == queues.ALL else ",".join(served)
        self.children: list[subprocess.Popen | None] = [None] * count
        self.stopping = 0

    def command(self, index: int) -> list[str]:
        args = [sys.executable, "manage.py", "worker", "--concurrency", "1", "--queues", self.queues]
        args += ["--interval", str(self.options["interval"]), "--verbosity", str(self.options["verbosity"])]
        if index > 0 or self.options["no_housekeeping"]:
            args.append("--no-housekeeping")  # one reaper and one schedule are enough
        return args

    def start(self, index: int) -> None:
        # Its own session: a terminal's Ctrl-C (sent to the whole group) reaches the children
        # only once, through stop(), so they drain instead of taking it as a second signal.
        self.children[index] = subprocess.Popen(
            self.command(index), cwd=settings.BASE_DIR, start_new_session=True
        )

    def stop(self, signum, _frame) -> None:
        self.stopping += 1
        for child in self.children:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)  # a second stop: they stop without draining

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        for index in range(self.count):
            self.start(index)
        logger.info("Supervising %s worker processes on queues %s", self.count, self.queues)
        while True:
            alive = False
            for index, child in enumerate(self.children):
                if child is None or child.poll() is None:
                    alive = True
                    continue
                if not self.stopping:
                    logger.warning(
                        "Worker process %s exited (%s); restarting it", child.pid, child.returncode
                    )
                    time.sleep(RESTART_DELAY_SECONDS)
                    self.start(index)
                    alive = True
            if not alive:
                return
            time.sleep(0.2)
