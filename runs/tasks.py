"""Thin tasks: load ids, call the executor/services; and the task rows of workers that died.

Imports run one way: the services enqueue these tasks (so they import this module), and a
task's body calls the executor or the services when a worker runs it — loaded at call time,
the only function-local project imports in runs/.
"""

from django.db import transaction
from django.tasks import TaskResultStatus, task
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from mlworkspace import queues


@task(queue_name=queues.TRAINING)
def execute_run_task(run_id: str) -> str:
    # At call time: runs.executor -> runs.services -> runs.tasks (services enqueue this task).
    from .executor import execute_run

    return execute_run(run_id)


def enqueue_run(run_id: str, run_type: str) -> None:
    """On the queue of its kind of work: score runs on ``scoring``, the others on ``training``."""
    execute_run_task.using(queue_name=queues.for_run_type(run_type)).enqueue(run_id)


@task(queue_name=queues.TRAINING)
def tune_assist_task(run_id: str, index: int = 1) -> str:
    """Run trials of a running tune run's study on this worker (``tuning.workers`` > 1)."""
    # At call time, as execute_run_task: runs.tuning_assist -> runs.executor -> ... -> this module.
    from .tuning_assist import tune_assist

    return tune_assist(run_id, index=index)


def enqueue_tune_assists(run_id: str, count: int) -> None:
    """``count`` assists of the tune run on the training queue (numbered 1..count: each draws
    its own TPE seed), once the caller's transaction commits (at once outside one)."""

    def enqueue() -> None:
        for index in range(1, count + 1):
            tune_assist_task.enqueue(run_id, index)

    transaction.on_commit(enqueue)


@task(queue_name=queues.TRAINING)
def profile_dataset_task(dataset_id: str) -> str:
    """Profile a large upload (services.dataset_create leaves it `processing`)."""
    # At call time: runs.services imports this module to enqueue the task.
    from .services import dataset_profile

    return dataset_profile(dataset_id=dataset_id)


def enqueue_dataset_profile(dataset_id: str) -> None:
    profile_dataset_task.enqueue(dataset_id)


def running_task_rows(task=execute_run_task):
    """The task rows of `task` that say RUNNING."""
    return DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING, task_path=task.module_path)


def fail_lost_task_rows(object_ids: list[str], *, reason: str, task=execute_run_task) -> int:
    """Mark the RUNNING task rows of `task` (default: execute_run_task) for these ids (their
    first argument) FAILED: django-tasks-db marks a row only when its task returns, so a row
    whose worker died would say RUNNING forever."""
    if not object_ids:
        return 0
    rows = running_task_rows(task).filter(args_kwargs__args__0__in=object_ids)
    return rows.update(
        status=TaskResultStatus.FAILED,
        finished_at=timezone.now(),
        exception_class_path="runs.executor.WorkerLost",
        traceback=f"WorkerLost: {reason}",
    )
