"""Thin tasks (django.tasks, run by `manage.py worker`): send one webhook delivery, send the
e-mails of one event. Enqueued by notifications.services when the write commits."""

from django.tasks import task

from mlworkspace import queues

from . import delivery

# On the monitoring queue, ahead of its other tasks (priority 0) when a worker is free.
DELIVERY_PRIORITY = 10


@task(priority=DELIVERY_PRIORITY, queue_name=queues.MONITORING)
def deliver_task(delivery_id: str) -> str:
    return delivery.deliver(delivery_id) or "nothing to do"


@task(priority=DELIVERY_PRIORITY, queue_name=queues.MONITORING)
def send_email_task(subject: str, body: str, recipients: list[str]) -> int:
    return delivery.send_emails(subject, body, recipients)


def enqueue_delivery(delivery_id: str) -> None:
    deliver_task.enqueue(delivery_id)


def enqueue_email(subject: str, body: str, recipients: list[str]) -> None:
    send_email_task.enqueue(subject, body, recipients)
