"""seed_demo: the whole demo in one transaction, and the two uploaded datasets it adds."""

from __future__ import annotations

import io
from collections.abc import Callable

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import transaction

from mlworkspace.csvsafe import write_csv
from recipes.models import Level, Recipe
from runs.families import get_family
from runs.services import dataset_create

from .builder import DemoBuilder, demo_exists, demo_user
from .families import FAILING_PRICING_ROWS, forecasting, location_scoring, next_best_action, pricing

DEFAULT_DAYS = 90
DEFAULT_ROWS = 5000
# The smallest `rows` with which every run meant to succeed does: pricing's 52 weeks of
# min_history need about 2200 synthetic rows.
MIN_ROWS = 2500


def build(demo: DemoBuilder) -> dict:
    """Every family's part of the demo, in order; returns the builder's summary."""
    base = {r.model_family: r for r in Recipe.objects.filter(level=Level.BASELINE)}
    forecasting(demo, base["forecasting"])
    pricing(demo, base["pricing"])
    next_best_action(demo, base["next_best_action"])
    location_scoring(demo, base["location_scoring"])
    return demo.summary


def seed_datasets(*, user, rows: int, log: Callable[[str], None]) -> list:
    """Two uploaded datasets, through the upload service as a user's file would go: FreshMart's
    store sales as CSV (it meets its recipe's requirements) and a short VoltMart price test as
    Parquet (too little history for the recipe's min_history, as the upload's check says)."""
    made = []
    for recipe_name, file_name, n in [
        ("FreshMart Stores", "freshmart_store_sales.csv", rows),
        ("VoltMart", "voltmart_price_test.parquet", FAILING_PRICING_ROWS),
    ]:
        recipe = Recipe.objects.filter(name=recipe_name).order_by("created_at").first()
        if recipe is None:
            continue
        frame = get_family(recipe.model_family).generate(n, 7)
        if file_name.endswith(".csv"):
            text = io.StringIO()
            write_csv(frame, text)
            content = text.getvalue().encode()
        else:
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            content = buffer.getvalue()
        upload = SimpleUploadedFile(file_name, content)
        dataset = dataset_create(user=user, upload=upload, recipe=recipe)
        problems = dataset.validation_json.get("errors") or []
        log(
            f"dataset '{dataset.name}' ({dataset.row_count} rows) for '{recipe.name}': {len(problems)} problems"
        )
        made.append(dataset)
    return made


def seed_demo(
    *, days: int = DEFAULT_DAYS, rows: int = DEFAULT_ROWS, log: Callable[[str], None] = print
) -> dict | None:
    """Build the demo; None if it already exists.

    One transaction: a failure half-way leaves nothing behind (so a re-run starts clean),
    and runs are only enqueued for the workers at commit, when they have already been
    executed here (the workers then find them no longer queued and skip them), so no worker
    can claim a run before this process executes it. On SQLite the
    transaction holds the write lock for the whole build (a minute or two), so run it before
    starting the server and workers, as `make run DEMO=1` does."""
    if not Recipe.objects.filter(pk="recipe_pricing_base").exists():
        call_command("loaddata", "baseline_recipes", verbosity=0)
        log("Loaded the baseline recipes.")
    with transaction.atomic():
        # Two seeders at once (PostgreSQL): the second waits here, then finds the demo.
        list(Recipe.objects.select_for_update().filter(pk="recipe_forecasting_base").values_list("pk"))
        if demo_exists():
            return None
        builder = DemoBuilder(user=demo_user(), days=days, rows=rows, log=log)
        summary = build(builder)
        summary["datasets"] = seed_datasets(user=builder.user, rows=rows, log=builder.say)
        return summary
