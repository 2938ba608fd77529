from types import SimpleNamespace

import pytest

from models_registry.models import MLModel
from models_registry.services import model_register, model_set_status
from recipes.models import Recipe
from runs.executor import execute_run
from runs.families import pricing
from runs.models import Run
from runs.services import run_start
from runs.tests.factories import trained_model

API = "/api/ml-development"


def promote(model, user):
    model_set_status(model=model, user=user, status="staging")
    model_set_status(model=model, user=user, status="production")
    model.refresh_from_db()
    return model


def sharing_artifact(user, champion, name="Twin challenger", recipe=None, recipe_version=None):
    """A challenger registered against `champion` that serves the champion's own trained
    artifact: a "trained model" without a second training, for tests that never compare the
    two models' answers."""
    model = model_register(
        user=user,
        name=name,
        recipe=recipe or champion.recipe,
        recipe_version=recipe_version or champion.recipe_version,
        challenger_of=champion if recipe is None else None,
    )
    MLModel.objects.filter(pk=model.pk).update(
        training_run=champion.training_run, artifacts_json=champion.artifacts_json
    )
    model.refresh_from_db()
    return model


# An artifact recorded on a model but never loaded: enough to be "trained" for the lifecycle
# and the experiment rules, for tests that never predict (no 2-second training each).
PAPER_ARTIFACT = {"dir": "artifacts/none", "files": {}, "model": ["model/model.json"]}


def on_paper(user, name, recipe, recipe_version, challenger_of=None):
    model = model_register(
        user=user, name=name, recipe=recipe, recipe_version=recipe_version, challenger_of=challenger_of
    )
    MLModel.objects.filter(pk=model.pk).update(artifacts_json=PAPER_ARTIFACT)
    model.refresh_from_db()
    return model


@pytest.fixture
def paper_champion(baselines, user):
    """The pricing baseline's production model, "trained" on paper (see PAPER_ARTIFACT)."""
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    return promote(on_paper(user, "Paper champion", recipe, recipe.current_version), user)


@pytest.fixture
def paper_twin(paper_champion, user):
    """A registered challenger of the paper champion, also trained on paper."""
    return on_paper(
        user,
        "Paper challenger",
        paper_champion.recipe,
        paper_champion.recipe_version,
        challenger_of=paper_champion,
    )


@pytest.fixture
def champion(baselines, user):
    """The pricing baseline's production model, trained on 3,000 rows (seed 1)."""
    return promote(trained_model(user, rows=3000), user)


@pytest.fixture
def challenger(champion, user):
    """A challenger of the champion, really trained on another world (seed 2): its answers
    differ from the champion's."""
    model = model_register(
        user=user,
        name="Retrained",
        recipe=champion.recipe,
        recipe_version=champion.recipe_version,
        challenger_of=champion,
    )
    run = run_start(
        user=user, recipe=model.recipe, model=model, params={"synthetic": {"rows": 3000, "seed": 2}}
    )
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    model.refresh_from_db()
    return model


@pytest.fixture
def twin(champion, user):
    return sharing_artifact(user, champion)


@pytest.fixture
def rows():
    """Forty pricing rows to predict, each with a customer_id (the experiments' unit)."""
    frame = pricing.generate(200, 9).drop(columns=["units"]).head(40)
    frame["week"] = frame["week"].astype(str)
    records = frame.to_dict(orient="records")
    for i, row in enumerate(records):
        row["customer_id"] = f"c{i}"
    return records


def start(client, champion, challenger, **body):
    payload = {
        "recipe_id": champion.recipe_id,
        "champion_id": champion.pk,
        "challenger_id": challenger.pk,
        "mode": "ab",
        "split": 0.5,
        "unit_key": "customer_id",
        "horizon": 100,
        **body,
    }
    return client.post(
        f"{API}/experiments", {k: v for k, v in payload.items() if v is not ...}, format="json"
    )


@pytest.fixture
def private(client_recipe):
    """A production model and a challenger (trained on paper) on Client A's private pricing
    recipe (the `client_recipe` fixture: `.member` is a data scientist of the client,
    `.outsider` a firm data scientist who must get 404s)."""
    admin, recipe, version = client_recipe.admin, client_recipe.recipe, client_recipe.version
    champion = promote(on_paper(admin, "A's champion", recipe, version), admin)
    other = on_paper(admin, "A's challenger", recipe, version, challenger_of=champion)
    return SimpleNamespace(**vars(client_recipe), champion=champion, challenger=other)
