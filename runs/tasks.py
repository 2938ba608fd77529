"""Thin tasks: load ids, call the executor/services."""

from django.tasks import task


@task()
def execute_run_task(run_id: str) -> str:
    from .executor import execute_run

    return execute_run(run_id)


def enqueue_run(run_id: str) -> None:
    execute_run_task.enqueue(run_id)


@task()
def profile_dataset_task(dataset_id: str) -> str:
    """Profile a large upload (services.dataset_create leaves it `processing`)."""
    from .services import dataset_profile

    return dataset_profile(dataset_id=dataset_id)


def enqueue_dataset_profile(dataset_id: str) -> None:
    profile_dataset_task.enqueue(dataset_id)
