"""The task queues (mlworkspace.queues): names, what goes where, and the worker's --queues."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django_tasks_db.models import DBTaskResult

from mlworkspace import queues
from notifications.tasks import enqueue_delivery, enqueue_email
from recipes.models import Recipe
from runs.management.commands import worker
from runs.services import run_start
from runs.tests.factories import trained_model


@pytest.mark.parametrize(
    ("text", "served"),
    [
        ("*", ("training", "scoring", "monitoring")),
        ("monitoring", ("monitoring",)),
        (" scoring , training ", ("training", "scoring")),
        ("training,*", ("training", "scoring", "monitoring")),
    ],
)
def test_parse_reads_star_and_lists(text, served):
    assert queues.parse(text) == served


@pytest.mark.parametrize(
    ("text", "words"),
    [("", "no queue given"), (" , ", "no queue given"), ("training,gpu", "unknown queue(s) gpu")],
)
def test_parse_names_what_is_wrong_and_what_is_known(text, words):
    with pytest.raises(ValueError) as error:
        queues.parse(text)
    assert words in str(error.value) and "training, scoring, monitoring" in str(error.value)


def queue_of(run_id: str) -> str:
    return DBTaskResult.objects.get(args_kwargs__args__0=run_id).queue_name


@pytest.mark.django_db(transaction=True)  # the task is enqueued when the run's row commits
def test_score_runs_go_to_scoring_and_the_other_runs_to_training(baselines, user):
    model = trained_model(user, rows=3000)
    score = run_start(user=user, recipe=model.recipe, model=model, run_type="score", params={})
    train = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), params={})
    evaluation = run_start(user=user, recipe=model.recipe, model=model, run_type="eval", params={})
    assert queue_of(score.pk) == "scoring"
    assert queue_of(train.pk) == queue_of(evaluation.pk) == "training"


@pytest.mark.django_db
def test_deliveries_and_e_mails_go_to_monitoring():
    enqueue_delivery("whd_1")
    enqueue_email("subject", "body", ["lead@example.com"])
    assert set(DBTaskResult.objects.values_list("queue_name", flat=True)) == {"monitoring"}


@pytest.mark.django_db
def test_a_worker_refuses_an_unknown_queue_before_it_starts():
    with pytest.raises(CommandError, match="--queues: unknown queue"):
        call_command("worker", queues="training,gpus")


@pytest.mark.django_db
@pytest.mark.parametrize("concurrency", [0, -1, 65])
def test_a_worker_refuses_a_concurrency_out_of_range(concurrency):
    with pytest.raises(CommandError, match=f"--concurrency: must be between 1 and 64, got {concurrency}"):
        call_command("worker", concurrency=concurrency)


def test_a_supervisors_processes_serve_its_queues_and_only_the_first_keeps_house():
    supervisor = worker.Supervisor(
        3, ("training", "scoring"), {"interval": 0.2, "verbosity": 1, "no_housekeeping": False}
    )
    commands = [supervisor.command(i) for i in range(3)]
    for command in commands:
        assert command[2:][:5] == ["worker", "--concurrency", "1", "--queues", "training,scoring"]
    assert ["--no-housekeeping" in c for c in commands] == [False, True, True]


def test_only_workers_serving_monitoring_run_the_schedule(monkeypatch):
    ran: list[str] = []
    for name in ("sweep_orphans", "run_due_checks", "deliver_due"):
        monkeypatch.setattr(worker, name, lambda name=name: ran.append(name))
    monkeypatch.setattr(worker, "close_old_connections", lambda: None)
    worker.housekeeping(("training", "scoring"))
    assert ran == ["sweep_orphans"]
    ran.clear()
    worker.housekeeping(("monitoring",))
    assert ran == ["sweep_orphans", "run_due_checks", "deliver_due"]
