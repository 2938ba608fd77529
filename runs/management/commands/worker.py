"""`manage.py worker`: the task worker (django-tasks-db's db_worker) plus housekeeping.

Housekeeping runs at start and then every WORKER_HOUSEKEEPING_SECONDS in a thread: it
fails runs whose worker was lost (the reaper) and runs due monitoring checks. Start as
many workers as you like, on one machine or many sharing one PostgreSQL database.
"""

import logging
import threading

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections

logger = logging.getLogger(__name__)


def housekeeping() -> None:
    from monitoring.scheduler import run_due_checks
    from runs.executor import reap_stale_runs

    close_old_connections()
    try:
        reap_stale_runs()
        run_due_checks()
    except Exception:  # keep the worker alive; the next round retries
        logger.exception("housekeeping failed")
    finally:
        close_old_connections()


class Command(BaseCommand):
    help = "Run background work: training runs (db_worker) plus the reaper and scheduled monitoring checks."

    def add_arguments(self, parser):
        parser.add_argument("--no-housekeeping", action="store_true", help="Only execute tasks.")
        parser.add_argument("--interval", type=float, default=0.5, help="Seconds between queue polls.")

    def handle(self, *args, **options):
        if not options["no_housekeeping"]:
            housekeeping()
            stop = threading.Event()

            def loop():
                while not stop.wait(settings.WORKER_HOUSEKEEPING_SECONDS):
                    housekeeping()

            threading.Thread(target=loop, name="housekeeping", daemon=True).start()
        call_command(
            "db_worker",
            interval=options["interval"],
            startup_delay=False,
            reload=False,
            verbosity=options["verbosity"],
        )
