"""Thin tasks: load ids, call the executor/services."""

from django.tasks import task


@task()
def execute_run_task(run_id: str) -> str:
    from .executor import execute_run

    return execute_run(run_id)


def enqueue_run(run_id: str) -> None:
    execute_run_task.enqueue(run_id)
