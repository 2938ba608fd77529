"""The experiment page, its stop form, the start page and the model page's partial."""

import numpy as np
import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.utils import timezone

from experiments import selectors, services, stats
from experiments.models import Experiment, Exposure, Outcome
from models_registry.models import ModelStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def experiment(paper_champion, paper_twin, user):
    return services.experiment_start(
        user=user,
        recipe=paper_champion.recipe,
        champion=paper_champion,
        challenger=paper_twin,
        mode="ab",
        split=0.2,
        unit_key="customer_id",
        baseline_rate=0.3,
        mde=0.1,
    )


def outcomes(experiment, values: dict[str, list[float]]):
    now = timezone.now()
    for arm, arm_values in values.items():
        units = [f"{arm}-{i}" for i in range(len(arm_values))]
        Exposure.objects.bulk_create(
            Exposure(experiment=experiment, unit=u, arm=arm, first_seen_at=now) for u in units
        )
        Outcome.objects.bulk_create(
            Outcome(experiment=experiment, unit=u, arm=arm, value=v, recorded_at=now)
            for u, v in zip(units, arm_values, strict=True)
        )


def test_the_experiment_page_shows_arms_test_horizon_and_stop_form(
    as_user, experiment, django_assert_max_num_queries
):
    outcomes(experiment, {"champion": [0, 1, 0, 0, 1, 0], "challenger": [1, 1, 0, 1]})
    with django_assert_max_num_queries(14):
        r = as_user.get(f"/model-development/experiments/{experiment.pk}")
    assert r.status_code == 200
    html = r.content.decode()
    assert experiment.horizon == 354  # (1.96 + 0.84)^2 * (0.21 + 0.24) / 0.1^2 = 353.2 -> 354 per arm
    assert "Fixed horizon, stated up front: <strong>354 units with an outcome per arm</strong>" in html
    assert "planned for a difference of 0.1 from a baseline rate of 0.3" in html
    assert 'id="arms-table"' in html and "(Wilson)" in html
    assert (
        "two-proportion z-test" in html
        and "do not stop early on this p-value" in html
        and ">interim<" in html
    )
    assert "Minimum detectable effect at the current sample size" in html
    assert 'name="winner" value="challenger" data-confirm=' in html
    # 6 champion units (2 ones), 4 challenger units (3 ones): the means are on the page.
    assert ">0.3333<" in html and ">0.7500<" in html


def test_the_shadow_page_renders(as_user, paper_champion, paper_twin, user):
    experiment = services.experiment_start(
        user=user,
        recipe=paper_champion.recipe,
        champion=paper_champion,
        challenger=paper_twin,
        mode="shadow",
        unit_key="store_id",
        horizon=10,
    )
    now = timezone.now()
    Exposure.objects.bulk_create(
        Exposure(
            experiment=experiment,
            unit=f"s{i}",
            arm="champion",
            first_seen_at=now,
            champion_prediction=float(i),
            challenger_prediction=float(i) + (1 if i % 2 else 0.5),
        )
        for i in range(6)
    )
    Exposure.objects.create(
        experiment=experiment, unit="s9", arm="champion", first_seen_at=now, champion_prediction=1.0
    )
    r = as_user.get(f"/model-development/experiments/{experiment.pk}")
    html = r.content.decode()
    assert r.status_code == 200 and 'id="shadow"' in html
    assert "7 units scored by both models" in html and "the challenger could not score 1" in html
    assert "mean absolute difference 0.7500" in html


def test_stop_from_the_page_promotes_the_challenger(as_user, experiment, paper_champion, paper_twin):
    r = as_user.post(f"/model-development/experiments/{experiment.pk}/stop", {"winner": "challenger"})
    assert r.status_code == 302 and r.url == f"/model-development/experiments/{experiment.pk}"
    paper_champion.refresh_from_db()
    paper_twin.refresh_from_db()
    assert (paper_twin.status, paper_champion.status) == (ModelStatus.PRODUCTION, ModelStatus.STAGING)
    page = as_user.get(r.url).content.decode()
    assert "is now the production model" in page and 'id="stop-form"' not in page
    # A second stop says why not, changes nothing.
    r = as_user.post(f"/model-development/experiments/{experiment.pk}/stop", {"winner": "none"}, follow=True)
    assert "already stopped" in r.content.decode()
    assert Experiment.objects.get(pk=experiment.pk).winner == "challenger"


def test_a_viewer_sees_the_page_but_cannot_stop(as_viewer, experiment):
    r = as_viewer.get(f"/model-development/experiments/{experiment.pk}")
    assert r.status_code == 200 and 'id="stop-form"' not in r.content.decode()
    assert (
        as_viewer.post(f"/model-development/experiments/{experiment.pk}/stop", {"winner": "none"}).status_code
        == 403
    )
    assert Experiment.objects.get(pk=experiment.pk).status == "running"


def test_another_clients_experiment_page_is_a_404(client, private):
    experiment = services.experiment_start(
        user=private.member,
        recipe=private.recipe,
        champion=private.champion,
        challenger=private.challenger,
        mode="ab",
        split=0.5,
        unit_key="customer_id",
        horizon=50,
    )
    client.force_login(private.outsider)
    assert client.get(f"/model-development/experiments/{experiment.pk}").status_code == 404
    assert (
        client.post(f"/model-development/experiments/{experiment.pk}/stop", {"winner": "none"}).status_code
        == 404
    )
    assert client.get(f"/model-development/models/{private.champion.pk}/experiments/new").status_code == 404
    client.force_login(private.member)
    assert client.get(f"/model-development/experiments/{experiment.pk}").status_code == 200


def test_start_from_the_page(as_user, paper_champion, paper_twin):
    url = f"/model-development/models/{paper_champion.pk}/experiments/new"
    assert as_user.get(url).status_code == 200
    r = as_user.post(
        url, {"challenger": paper_twin.pk, "mode": "ab", "split": "0.1", "unit_key": "customer id"}
    )
    assert r.status_code == 400
    html = r.content.decode()
    assert "must be a field name" in html and not Experiment.objects.exists()
    r = as_user.post(
        url, {"challenger": paper_twin.pk, "mode": "ab", "split": "0.1", "unit_key": "customer_id"}
    )
    assert r.status_code == 400 and "horizon" in r.content.decode() and "is required" in r.content.decode()
    r = as_user.post(
        url,
        {
            "challenger": paper_twin.pk,
            "mode": "ab",
            "split": "0.1",
            "unit_key": "customer_id",
            "horizon": "500",
        },
    )
    experiment = Experiment.objects.get()
    assert r.status_code == 302 and r.url == f"/model-development/experiments/{experiment.pk}"
    assert (experiment.split, experiment.horizon, experiment.challenger_id) == (0.1, 500, paper_twin.pk)
    # The recipe has a running experiment now: the form says so.
    r = as_user.post(
        url,
        {
            "challenger": paper_twin.pk,
            "mode": "ab",
            "split": "0.1",
            "unit_key": "customer_id",
            "horizon": "500",
        },
    )
    assert r.status_code == 400 and "is running on this recipe" in r.content.decode()


def test_a_viewer_cannot_start_from_the_page(as_viewer, paper_champion, paper_twin):
    url = f"/model-development/models/{paper_champion.pk}/experiments/new"
    r = as_viewer.post(
        url, {"challenger": paper_twin.pk, "mode": "ab", "split": "0.1", "unit_key": "c", "horizon": "9"}
    )
    assert r.status_code == 403 and not Experiment.objects.exists()


def test_the_model_page_partial(user, viewer, paper_champion, paper_twin, django_assert_max_num_queries):
    request = RequestFactory().get("/")
    request.user = user
    # Its experiments, the recipe's running one, the candidates; the user's permissions (2).
    with django_assert_max_num_queries(5):
        summary = selectors.model_experiments(paper_champion, user)
    assert summary["can_start"] and [m.pk for m in summary["candidates"]] == [paper_twin.pk]
    html = render_to_string("experiments/_model_experiments.html", {"experiments": summary}, request)
    assert f'action="/model-development/models/{paper_champion.pk}/experiments/new"' in html
    assert "No experiment with this model yet" in html
    assert not selectors.model_experiments(paper_champion, viewer)["can_start"]
    # The challenger's page: it is not the champion, so it says where experiments start.
    assert "production model" in selectors.model_experiments(paper_twin, user)["why_not"]
    experiment = services.experiment_start(
        user=user,
        recipe=paper_champion.recipe,
        champion=paper_champion,
        challenger=paper_twin,
        mode="ab",
        split=0.25,
        unit_key="customer_id",
        horizon=30,
    )
    outcomes(experiment, {"champion": [1, 0, 1], "challenger": [0]})
    with django_assert_max_num_queries(5):
        summary = selectors.model_experiments(paper_twin, user)
    html = render_to_string("experiments/_model_experiments.html", {"experiments": summary}, request)
    assert f'href="/model-development/experiments/{experiment.pk}"' in html
    assert "25 % of units to the challenger · units: 3 champion, 1 challenger" in html
    assert "against this model" in html and not summary["can_start"]
    services.experiment_stop(experiment=experiment, user=user, winner="none")
    html = render_to_string(
        "experiments/_model_experiments.html",
        {"experiments": selectors.model_experiments(paper_twin, user)},
        request,
    )
    assert 'id="past-experiments"' in html and "None" in html


def test_variances_are_exact_far_from_zero(experiment):
    """The statistics' two-pass variance: outcomes around 10^9 with a spread of a few units."""
    rng = np.random.default_rng(2)
    champion, challenger = 1e9 + rng.normal(0, 2, 50), 1e9 + 1 + rng.normal(0, 3, 40)
    outcomes(experiment, {"champion": list(champion), "challenger": list(challenger)})
    arms = selectors.experiment_statistics(experiment)["analysis"]["arms"]
    for arm, values in (("champion", champion), ("challenger", challenger)):
        low, high = stats.mean_interval(len(values), values.mean(), values.var(ddof=1))
        assert arms[arm]["low"] == pytest.approx(low, abs=1e-6) and arms[arm]["high"] == pytest.approx(
            high, abs=1e-6
        )
