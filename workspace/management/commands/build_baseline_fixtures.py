"""Rebuild fixtures/baseline_recipes.json from recipes/baselines/*.json.

Each baseline's synthetic example is produced by really running its pipeline on its
generator's data (recipes.baselines.EXAMPLE_ROWS rows, seed 42): the example metrics are the
numbers the baseline reaches, never typed in.
"""

import json
import tempfile

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from recipes import baselines
from recipes.manifest import validate_manifest
from runs.synthetic import build_example

CREATED = "2026-01-05T09:00:00Z"


class Command(BaseCommand):
    help = "Regenerate fixtures/baseline_recipes.json (trains each baseline on its synthetic data)."
    requires_system_checks = []

    def handle(self, *args, **options):
        objects = []
        for family in baselines.families():
            manifest = baselines.manifest(family)
            errors = validate_manifest(manifest, family=family, level="baseline")
            if errors:
                raise CommandError(f"{family}: invalid baseline manifest: {errors}")
            rid, vid = baselines.recipe_id(family), baselines.version_id(family)
            self.stdout.write(f"{family}: training the synthetic example…")
            with tempfile.TemporaryDirectory() as tmp:
                example = build_example(family, manifest, workdir=tmp)
            objects.append(
                {
                    "model": "recipes.recipe",
                    "pk": rid,
                    "fields": {
                        "name": baselines.NAMES[family],
                        "description": manifest["metadata"]["description"],
                        "model_family": family,
                        "level": "baseline",
                        "parent": None,
                        "status": "approved",
                        "owner": "platform-team",
                        "created_by": None,
                        "created_at": CREATED,
                        "updated_at": CREATED,
                    },
                }
            )
            objects.append(
                {
                    "model": "recipes.recipeversion",
                    "pk": vid,
                    "fields": {
                        "recipe": rid,
                        "version": "1.0.0",
                        "manifest": manifest,
                        "changelog": "Baseline recipe",
                        "created_by": None,
                        "created_at": CREATED,
                        "approved_by": None,
                        "approved_at": CREATED,
                    },
                }
            )
            for tag in baselines.TAGS[family]:
                objects.append({"model": "recipes.recipetag", "fields": {"recipe": rid, "name": tag}})
            objects.append(
                {
                    "model": "recipes.syntheticexample",
                    "pk": f"synth_{rid.removeprefix('recipe_')}",
                    "fields": {"recipe": rid, **example, "created_at": CREATED, "updated_at": CREATED},
                }
            )
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in example["example_metrics_json"].items())
            self.stdout.write(f"  {metrics}")
        path = settings.BASE_DIR / "fixtures" / "baseline_recipes.json"
        path.write_text(json.dumps(objects, indent=1) + "\n")
        self.stdout.write(self.style.SUCCESS(f"wrote {path}"))
