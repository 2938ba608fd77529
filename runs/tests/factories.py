from models_registry import services as model_services
from recipes.models import Recipe
from runs.executor import execute_run
from runs.models import Run
from runs.services import run_start


def approved_baseline(family_id: str = "recipe_pricing_base") -> Recipe:
    return Recipe.objects.get(pk=family_id)


def register(user, recipe_id: str = "recipe_pricing_base", name: str = "Pricing model"):
    recipe = Recipe.objects.get(pk=recipe_id)
    return model_services.model_register(
        user=user, name=name, recipe=recipe, recipe_version=recipe.current_version
    )


def trained_model(user, recipe_id: str = "recipe_pricing_base", rows: int = 3000):
    """A registered model with a real trained artifact (the run executes in-process)."""
    model = register(user, recipe_id)
    run = run_start(
        user=user, recipe=model.recipe, model=model, params={"synthetic": {"rows": rows, "seed": 1}}
    )
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    model.refresh_from_db()
    return model
