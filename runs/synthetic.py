"""A recipe's synthetic example, produced by really running its pipeline (no Django).

Running a pipeline is the runs app's job: the recipe only stores the example it produced
(recipes.SyntheticExample; the baselines' are built by `manage.py build_baseline_fixtures`).
"""

from __future__ import annotations

from pathlib import Path

from recipes import baselines

from .data import required_columns
from .families import get_family, worlds
from .pipeline import execute, json_safe

SAMPLE_ROWS = 8


def build_example(
    family_name: str, manifest: dict, *, workdir: str, rows: int | None = None, seed: int | None = None
) -> dict:
    """{schema_json, sample_rows_json, expected_output_json, example_metrics_json, generator_json}."""
    family = get_family(family_name)
    rows = rows or baselines.EXAMPLE_ROWS[family_name]
    seed = baselines.EXAMPLE_SEED if seed is None else seed
    batch = worlds.resolve(family, {"rows": rows, "seed": seed})  # the first window of its world
    spec = {
        "run_id": "example",
        "run_type": "train",
        "family": family_name,
        "manifest": manifest,
        "data": {"synthetic": batch},
        "artifact_dir": workdir,
        "model_dir": None,
        "threads": 1,
    }
    result = execute(spec, lambda *message: None)
    model = family.load(Path(workdir) / "model")
    frame = worlds.generate(family, batch, manifest)
    sample = frame.head(SAMPLE_ROWS)
    required = required_columns(manifest, family_name)
    schema = [
        {**column, "required": column["name"] in required, "required_by": required.get(column["name"], [])}
        for column in family.SCHEMA
    ]
    return {
        "schema_json": schema,
        "sample_rows_json": json_safe(sample.to_dict(orient="records")),
        "expected_output_json": json_safe(family.example_output(model, sample)),
        "example_metrics_json": result["metrics"],
        "generator_json": {
            "rows": rows,
            "seed": seed,
            "world": worlds.describe(family, batch),
            "recipe_version": manifest["metadata"]["version"],
        },
    }
