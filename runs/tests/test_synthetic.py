"""A recipe's synthetic example (runs.synthetic): the baselines' numbers are real, reached by
really running their pipelines."""

import json
from pathlib import Path

import pytest
from django.conf import settings

from recipes import baselines
from runs.families import get_family
from runs.synthetic import build_example

FIXTURE = json.loads((Path(settings.BASE_DIR) / "fixtures" / "baseline_recipes.json").read_text())


def fixture_object(model: str, pk: str) -> dict:
    return next(o for o in FIXTURE if o["model"] == model and o.get("pk") == pk)


@pytest.mark.parametrize("family", baselines.families())
def test_synthetic_example_metrics_are_really_reached(family, tmp_path):
    """Re-run the baseline on the recorded generator settings: same numbers, not invented ones."""
    example = fixture_object(
        "recipes.syntheticexample", f"synth_{baselines.recipe_id(family).removeprefix('recipe_')}"
    )
    fields = example["fields"]
    generator = fields["generator_json"]
    fresh = build_example(
        family,
        baselines.manifest(family),
        workdir=str(tmp_path),
        rows=generator["rows"],
        seed=generator["seed"],
    )
    assert fresh["example_metrics_json"] == pytest.approx(fields["example_metrics_json"], rel=1e-6)
    # The schema is exactly the generator's columns, and marks what the recipe requires.
    columns = [c["name"] for c in fields["schema_json"]]
    assert columns == list(get_family(family).generate(200, 1).columns)
    assert set(fields["sample_rows_json"][0]) == set(columns)
    required = {c["name"] for c in fields["schema_json"] if c["required"]}
    manifest = baselines.manifest(family)
    assert set(manifest["requirements"]["labels"]) <= required
