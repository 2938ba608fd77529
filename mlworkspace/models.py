"""Operational state shared by every process: the workers' heartbeats (for /healthz and
/metrics). Domain data lives in the domain apps."""

from django.db import models


class WorkerHeartbeat(models.Model):
    """One row per running `manage.py worker` process, beaten every WORKER_BEAT_SECONDS
    (mlworkspace.health). Kept in the database so a web server on one machine sees workers
    on others; a worker deletes its row when it stops cleanly, and rows of workers that
    died are pruned after a day."""

    worker_id = models.CharField(primary_key=True, max_length=200)  # "<host>:<pid>"
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    # The queues it serves (mlworkspace.queues), comma-separated.
    queues = models.CharField(max_length=200, default="training,scoring,monitoring")

    class Meta:
        # /healthz and /metrics: the newest beat.
        indexes = [models.Index(fields=["beat_at"], name="ml_worker_beat_idx")]

    def __str__(self) -> str:
        return self.worker_id
