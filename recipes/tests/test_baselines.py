"""The shipped baselines: valid manifests (their synthetic examples' numbers are checked by
runs/tests/test_synthetic.py, which re-runs their pipelines)."""

import json
from pathlib import Path

import pytest
from django.conf import settings

from recipes import baselines
from recipes.manifest import validate_manifest

FIXTURE = json.loads((Path(settings.BASE_DIR) / "fixtures" / "baseline_recipes.json").read_text())


def fixture_object(model: str, pk: str) -> dict:
    return next(o for o in FIXTURE if o["model"] == model and o.get("pk") == pk)


@pytest.mark.parametrize("family", baselines.families())
def test_fixture_manifest_is_the_source_manifest_and_valid(family):
    version = fixture_object("recipes.recipeversion", baselines.version_id(family))
    assert version["fields"]["manifest"] == baselines.manifest(family)
    assert version["fields"]["approved_at"]
    assert validate_manifest(version["fields"]["manifest"], family=family, level="baseline") == []
    recipe = fixture_object("recipes.recipe", baselines.recipe_id(family))
    assert recipe["fields"]["name"] == baselines.NAMES[family]
    assert recipe["fields"]["status"] == "approved"
