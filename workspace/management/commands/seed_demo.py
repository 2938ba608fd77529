"""Fill a realistic demo workspace (idempotent): `make run DEMO=1` or `make demo` run it."""

import time

from django.core.management.base import BaseCommand, CommandError

from workspace.demo import (
    DEFAULT_DAYS,
    DEFAULT_ROWS,
    MIN_ROWS,
    DemoError,
    DemoTuningError,
    demo_exists,
    seed_demo,
)


class Command(BaseCommand):
    help = (
        "Create demo recipes, versions, models in every status, runs of every type, a "
        "monitoring history with a drift episode and a tune run, through the real services and runs. "
        "Does nothing when the demo is already there."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="store_true",
            help="build nothing: exit 0 when the demo is there, 1 when not (`make run` asks)",
        )
        parser.add_argument(
            "--days", type=int, default=DEFAULT_DAYS, help="days of daily monitoring history (default 90)"
        )
        parser.add_argument(
            "--rows",
            type=int,
            default=DEFAULT_ROWS,
            help=f"synthetic rows per train/eval/backtest run (default {DEFAULT_ROWS}; at least {MIN_ROWS})",
        )

    def handle(self, *args, days: int, rows: int, check: bool = False, **options):
        if check:
            if not demo_exists():
                raise CommandError("There is no demo workspace.", returncode=1)
            self.stdout.write("The demo workspace is there.")
            return
        if days < 0:
            raise CommandError("--days must be 0 or more")
        if rows < MIN_ROWS:
            # Fewer would fail runs meant to succeed: pricing's min_history of 52 weeks needs
            # about 2200 synthetic rows, site scoring's 1000 rows.
            raise CommandError(f"--rows must be at least {MIN_ROWS}")
        started = time.monotonic()
        try:
            summary = seed_demo(days=days, rows=rows, log=self.stdout.write)
        except DemoTuningError as exc:
            raise CommandError(f"The demo was built and saved, but its tune run failed: {exc}") from exc
        except DemoError as exc:
            raise CommandError(f"The demo could not be built (nothing was saved): {exc}") from exc
        if summary is None:
            self.stdout.write("The demo workspace is already there; nothing to do.")
            return
        runs = summary["runs"]
        by_status = {}
        for run in runs:
            by_status[run.status] = by_status.get(run.status, 0) + 1
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready in {time.monotonic() - started:.0f}s: {len(summary['recipes'])} recipes, "
                f"{len(summary['models'])} models, {len(runs)} runs "
                f"({', '.join(f'{n} {s}' for s, n in sorted(by_status.items()))}), "
                f"{len(summary['alerts'])} alert episode(s) on the site-scoring model."
            )
        )
        self.stdout.write(summary["tuning"]["statement"])
