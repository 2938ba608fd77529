"""seed_demo: the whole demo in one transaction, the two uploaded datasets it adds, then the
demo's tune run in a step of its own (workspace.demo.tuning)."""

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
from .tuning import DemoTuningError, tune

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
    starting the server and workers, as `make run DEMO=1` does.

    Then, after the commit, the demo's tune run (workspace.demo.tuning.tune): its study's
    child process writes Optuna's tables through a connection of its own, which would wait
    for this transaction's lock. Its runs are enqueued as they are started and executed here
    right after, so a worker already running could claim one first: another reason to seed
    before starting the workers. If that step fails, DemoTuningError says so, and the demo
    committed before it stays: a re-run finds the demo and does nothing (a tune run can then
    be started on BurgerBay's tuning version, or a new one, from its page)."""
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
    try:
        summary["tuning"] = tune(builder)
    except Exception as exc:
        # Whatever stopped it (a run that failed, a write refused, a locked database), the demo
        # committed above stays: the error must say so rather than "nothing was saved".
        raise DemoTuningError(str(exc) or type(exc).__name__) from exc
    return summary
