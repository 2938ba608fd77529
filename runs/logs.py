"""Writing a run's log: lines with consecutive per-run `seq` numbers (`?after=<seq>` pages on them).

The executor (a worker's progress, the reaper) and the services (cancel, external reports,
the end of a run) both append lines, so the writing lives here, below both: the executor logs
without going through the services.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from .models import Run, RunLog


def run_log(*, run: Run, message: str, level: str = "info", ts=None) -> None:
    run_logs_append(run=run, lines=[{"message": message, "level": level, "ts": ts}])


@transaction.atomic
def run_logs_append(*, run: Run, lines: list[dict]) -> None:
    """Append log lines with consecutive seq numbers (the run row is locked meanwhile)."""
    if not lines:
        return
    Run.objects.select_for_update().filter(pk=run.pk).first()
    last = RunLog.objects.filter(run_id=run.pk).aggregate(m=Max("seq"))["m"] or 0
    now = timezone.now()
    RunLog.objects.bulk_create(
        [
            RunLog(
                run_id=run.pk,
                seq=last + i + 1,
                ts=line.get("ts") or now,
                level=line.get("level", "info"),
                message=str(line["message"])[:10_000],
            )
            for i, line in enumerate(lines)
        ]
    )
