import copy

from recipes import baselines, services


def manifest_for(family: str = "pricing", level: str = "baseline") -> dict:
    manifest = copy.deepcopy(baselines.manifest(family))
    manifest["metadata"]["level"] = level
    return manifest


def make_recipe(
    user, *, family="pricing", level="baseline", parent=None, name=None, tags=None, approve_by=None
):
    recipe = services.recipe_create(
        user=user,
        name=name or f"{family} {level} recipe",
        model_family=family,
        level=level,
        parent=parent,
        manifest=manifest_for(family, level),
        tags=tags or [],
    )
    if approve_by is not None:
        # Test set-up approves without evidence runs; the gate itself is tested in test_lineage_api.
        services.version_approve(
            version=recipe.current_version, user=approve_by, override_reason="approved in test set-up"
        )
        recipe.refresh_from_db()
    return recipe
