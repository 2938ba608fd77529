"""A/B tests in a real browser: on the production model's page the A/B card starts a test
against a challenger of the same recipe; predict requests and outcomes go through the API
(as a client's would); the experiment page shows the units each arm served and its outcomes;
stopping it from the page with the challenger as the winner promotes the challenger. A start
without a challenger comes back with the form's error."""

from __future__ import annotations

from collections import Counter

import pytest
from playwright.sync_api import expect

from experiments.models import Experiment
from models_registry.models import MLModel
from models_registry.services import model_register, model_set_status
from recipes.models import Recipe
from runs.executor import execute_run
from runs.families import pricing
from runs.models import Run
from runs.services import run_start
from runs.tests.factories import trained_model

from .test_model_page import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

API = "/api/ml-development"


@pytest.fixture
def champion(baselines, user):
    """The pricing baseline's production model, trained on 3,000 rows (world seed 1)."""
    model = trained_model(user, rows=3000)
    model_set_status(model=model, user=user, status="staging")
    model_set_status(model=model, user=user, status="production")
    return MLModel.objects.get(pk=model.pk)


@pytest.fixture
def challenger(champion, user):
    """A registered challenger of the champion, trained on another world (seed 2)."""
    model = model_register(
        user=user,
        name="Retrained pricing model",
        recipe=champion.recipe,
        recipe_version=champion.recipe_version,
        challenger_of=champion,
    )
    run = run_start(
        user=user, recipe=model.recipe, model=model, params={"synthetic": {"rows": 3000, "seed": 2}}
    )
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    return MLModel.objects.get(pk=model.pk)


def _rows(start: int, count: int) -> list[dict]:
    """Pricing rows to predict, each with a customer_id (the experiment's unit)."""
    frame = pricing.generate(200, 9).drop(columns=["units"]).iloc[start : start + count]
    frame["week"] = frame["week"].astype(str)
    records = frame.to_dict(orient="records")
    for i, row in enumerate(records, start=start):
        row["customer_id"] = f"c{i}"
    return records


def _start_form(page, base: str, model: MLModel):
    page.goto(f"{base}/model-development/models/{model.pk}?tab=monitoring")
    card = page.locator("#experiments")
    expect(card).to_contain_text("No experiment with this model yet.")
    return card.locator("#experiment-start-form")


def test_start_an_ab_test_watch_its_arms_and_promote_the_challenger(
    page, live_server, user, api_client, champion, challenger, shots
):
    base = live_server.url
    login(page, base)
    form = _start_form(page, base, champion)
    form.locator("#exp-challenger").select_option(challenger.pk)
    form.locator("#exp-mode").select_option("ab")
    form.locator("#exp-split").fill("0.5")
    form.locator("#exp-unit-key").fill("customer_id")
    form.locator("#exp-horizon").fill("5")
    shots(page, "experiment-card")
    page.once("dialog", lambda dialog: dialog.accept())
    form.get_by_role("button", name="Start the test").click()
    expect(page.locator("#messages")).to_contain_text("is running")
    experiment = Experiment.objects.get()
    assert (experiment.champion_id, experiment.challenger_id) == (champion.pk, challenger.pk)
    assert (experiment.split, experiment.unit_key, experiment.horizon) == (0.5, "customer_id", 5)
    page.wait_for_url(f"{base}/model-development/experiments/{experiment.pk}")
    expect(page.locator("#experiment-status")).to_have_text("Running")

    # Traffic: three predict requests to the champion's endpoint, 36 units, one unit sent twice.
    arms: dict[str, str] = {}
    for start in (0, 12, 24):
        rows = _rows(start, 12)
        if start:
            rows.append(_rows(0, 1)[0])  # c0 again: the same arm, one exposure
        response = api_client.post(f"{API}/models/{champion.pk}/predict", {"rows": rows}, format="json")
        assert response.status_code == 200, response.content
        answer = response.json()
        assert answer["experiment_id"] == experiment.pk and len(answer["arms"]) == len(rows)
        for row, arm in zip(rows, answer["arms"], strict=True):
            assert arms.setdefault(row["customer_id"], arm) == arm
    units = Counter(arms.values())
    assert sum(units.values()) == 36 and units["champion"] >= 5 and units["challenger"] >= 5
    # Outcomes for every unit but two of each arm (a binary outcome: 1 for every third unit).
    skipped = {arm: [u for u, a in arms.items() if a == arm][:2] for arm in units}
    posted = [
        {"unit": unit, "value": float(int(unit[1:]) % 3 == 0)}
        for unit in arms
        if unit not in skipped["champion"] + skipped["challenger"]
    ]
    response = api_client.post(
        f"{API}/experiments/{experiment.pk}/outcomes", {"outcomes": posted}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["recorded"] == len(posted) == 32

    page.reload()
    for arm in ("champion", "challenger"):
        cells = page.locator(f"#arms-table tr.arm-{arm} td")
        expect(cells.nth(1)).to_have_text(str(units[arm]))  # units exposed
        expect(cells.nth(2)).to_have_text(str(units[arm] - 2))  # outcomes
    expect(page.locator("#verdict")).to_contain_text("Final")  # both arms reached 5
    expect(page.locator("#test")).to_contain_text("two-proportion z-test")
    shots(page, "experiment-page")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Challenger wins: promote it").click()
    expect(page.locator("#messages")).to_contain_text(
        f"“{challenger.name}” is now the production model; “{champion.name}” went to staging."
    )
    expect(page.locator("#experiment-status")).to_have_text("Stopped")
    expect(page.locator("#experiment-winner")).to_contain_text("Challenger")
    expect(page.locator("#stop-form")).to_have_count(0)
    shots(page, "experiment-stopped")
    assert MLModel.objects.get(pk=challenger.pk).status == "production"
    assert MLModel.objects.get(pk=champion.pk).status == "staging"
    page.get_by_role("link", name=challenger.name).first.click()
    expect(page.locator("#model-status")).to_have_text("Production")
    page.goto(f"{base}/model-development/models/{challenger.pk}?tab=monitoring")
    past = page.locator("#past-experiments")
    expect(past).to_contain_text("Stopped")
    expect(past).to_contain_text("Challenger (promoted)")
    assert page.js_errors == []


def test_a_start_without_a_challenger_shows_the_forms_error(page, live_server, champion, challenger, shots):
    base = live_server.url
    login(page, base)
    form = _start_form(page, base, champion)
    # A form sent with no challenger chosen (the select is required in the browser: a stale or
    # hand-made form); the server answers with the start page and the field's error.
    form.locator("#exp-challenger").evaluate(
        "select => { select.required = false; select.selectedIndex = -1; }"
    )
    form.locator("#exp-horizon").fill("100")
    page.once("dialog", lambda dialog: dialog.accept())
    form.get_by_role("button", name="Start the test").click()
    page.wait_for_url(f"{base}/model-development/models/{champion.pk}/experiments/new")
    field = page.locator("#experiment-new-form .field.has-error")
    expect(field).to_have_count(1)
    expect(field.locator("label")).to_contain_text("Challenger")
    expect(field.locator(".field-error")).to_contain_text("This field is required.")
    expect(field.locator("select")).to_have_value("")  # none shown as chosen
    expect(field.locator("select option").first).to_have_text("Choose a challenger")
    shots(page, "experiment-start-error")
    assert not Experiment.objects.exists()
    assert Recipe.objects.get(pk=champion.recipe_id).experiments.count() == 0
    assert page.js_errors == []
