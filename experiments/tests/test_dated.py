"""The experiment services' `at` (seeded history: the demo dates its A/B test inside the
monitoring history): every time they write — the start, the exposures, the outcomes, the stop,
their audit events, the winner's promotion and the notifications — is `at`; without it, now."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from experiments.models import Exposure, Outcome
from experiments.services import experiment_outcomes, experiment_predict, experiment_start, experiment_stop
from models_registry.models import MLModel
from notifications.models import Delivery
from notifications.services import webhook_create

pytestmark = pytest.mark.django_db


def _start(champion, challenger, user, mode="ab", at=None):
    return experiment_start(
        user=user,
        recipe=champion.recipe,
        champion=champion,
        challenger=challenger,
        mode=mode,
        split=0.5 if mode == "ab" else None,
        unit_key="customer_id",
        horizon=10,
        at=at,
    )


def _outcomes(rows) -> list[dict]:
    return [{"unit": row["customer_id"], "value": float(i % 2)} for i, row in enumerate(rows)]


def _events(action, object_id) -> list:
    return list(AuditEvent.objects.filter(action=action, object_id=object_id).values_list("at", flat=True))


def test_a_dated_ab_test_writes_its_times_everywhere(champion, twin, user, rows):
    hook = webhook_create(
        user=user,
        name="Listener",
        url="https://hooks.example.com/ml",
        recipe=champion.recipe,
        events=["experiment.result", "model.status"],
    )
    started = timezone.now() - timedelta(days=5)
    served, posted, stopped = (started + timedelta(days=n) for n in (1, 2, 3))

    experiment = _start(champion, twin, user, at=started)
    assert experiment.started_at == started
    assert _events("experiment.start", experiment.pk) == [started]

    answer = experiment_predict(champion, rows, at=served)
    assert answer["experiment_id"] == experiment.pk
    exposures = Exposure.objects.filter(experiment=experiment)
    assert exposures.count() == len(rows)
    assert set(exposures.values_list("first_seen_at", flat=True)) == {served}
    # Served again later: a unit keeps its first request's time.
    experiment_predict(champion, rows, at=posted)
    assert set(exposures.values_list("first_seen_at", flat=True)) == {served}

    result = experiment_outcomes(experiment=experiment, outcomes=_outcomes(rows), user=user, at=posted)
    assert result["recorded"] == len(rows)
    assert set(Outcome.objects.filter(experiment=experiment).values_list("recorded_at", flat=True)) == {
        posted
    }
    assert _events("experiment.outcomes", experiment.pk) == [posted]

    stop = experiment_stop(experiment=experiment, user=user, winner="challenger", at=stopped)
    assert (stop["promoted"], stop["replaced"]) == (twin.pk, [champion.pk])
    assert stop["experiment"].stopped_at == stopped
    assert _events("experiment.stop", experiment.pk) == [stopped]
    # The promotion (registered → staging → production) and the champion's demotion.
    assert _events("model.status", twin.pk) == [stopped, stopped]
    demotion = AuditEvent.objects.get(
        action="model.status", object_id=champion.pk, detail__replaced_by=twin.pk
    )
    assert demotion.at == stopped
    promoted, demoted = MLModel.objects.get(pk=twin.pk), MLModel.objects.get(pk=champion.pk)
    assert (promoted.status, demoted.status) == ("production", "staging")
    assert promoted.promoted_at == promoted.updated_at == demoted.updated_at == stopped
    sent = dict(Delivery.objects.filter(webhook=hook).values_list("event", "created_at").distinct())
    assert sent == {"experiment.result": stopped, "model.status": stopped}


def test_shadow_exposures_are_last_seen_at_the_latest_requests_time(champion, twin, user, rows):
    started = timezone.now() - timedelta(days=3)
    first, latest = started + timedelta(days=1), started + timedelta(days=2)
    experiment = _start(champion, twin, user, mode="shadow", at=started)
    experiment_predict(champion, rows, at=first)
    experiment_predict(champion, rows, at=latest)
    times = set(Exposure.objects.filter(experiment=experiment).values_list("first_seen_at", "last_seen_at"))
    assert times == {(first, latest)}


def test_without_at_every_write_is_dated_now(champion, twin, user, rows):
    before = timezone.now()
    experiment = _start(champion, twin, user)
    experiment_predict(champion, rows)
    experiment_outcomes(experiment=experiment, outcomes=_outcomes(rows), user=user)
    stopped = experiment_stop(experiment=experiment, user=user, winner="challenger")["experiment"]
    after = timezone.now()

    written = {
        "started_at": [experiment.started_at],
        "stopped_at": [stopped.stopped_at],
        "promoted_at": [MLModel.objects.get(pk=twin.pk).promoted_at],
        "first_seen_at": list(
            Exposure.objects.filter(experiment=experiment).values_list("first_seen_at", flat=True)
        ),
        "recorded_at": list(
            Outcome.objects.filter(experiment=experiment).values_list("recorded_at", flat=True)
        ),
        **{
            action: _events(action, experiment.pk)
            for action in ("experiment.start", "experiment.outcomes", "experiment.stop")
        },
        "model.status": _events("model.status", twin.pk),
    }
    for name, moments in written.items():
        assert moments and all(before <= moment <= after for moment in moments), name
