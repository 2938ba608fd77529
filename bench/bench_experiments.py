"""Predict latency and throughput while an A/B or shadow experiment runs (issue #14's targets:
p95 <= 30 ms for a single row in-process, >= 50k rows/s in batch predict).

For each family, in a fresh database (a temporary SQLite file unless DATABASE_URL is set):
the baseline recipe's champion (seed 1) and a challenger (seed 2) are trained on the
family's default synthetic rows (not measured), the champion is promoted to production, then
everything below goes through the whole stack in-process — DRF's test client on
``POST /api/ml-development/models/{id}/predict``: URL routing, authentication, the JSON
parser, the experiment lookup, the arm assignment, both models' predictions, the exposures
written to the database and the JSON response (no network; the request body is encoded
before the clock starts).

* single row, A/B (split 0.1): ``--requests`` requests (default 500), each a new unit (an
  exposure inserted per request: the worst case), after 20 warm-up requests; p50/p95/p99.
  The same without an experiment, for comparison. A forecaster's single rows are periods
  within its horizon (``horizon_rows``); the batch's rows are the next windows of the world.
* batch: ``--rows`` rows (default 50,000, all distinct units) in one request, best of
  ``--repeats`` (default 3): no experiment, A/B, shadow (the challenger scores every row
  and both answers are upserted per unit). The first A/B and shadow requests insert the
  exposures; the later ones hit existing units (A/B: insert-ignore; shadow: update).

    .venv/bin/python bench/bench_experiments.py                       # pricing
    .venv/bin/python bench/bench_experiments.py --families pricing next_best_action location_scoring forecasting
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mlworkspace_bench_exp .venv/bin/python bench/bench_experiments.py
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def environment() -> Path:
    """A temporary data folder (media, and the SQLite file unless DATABASE_URL is set), removed
    at exit. Set in main() only: the runs' child processes import this module again."""
    work = Path(tempfile.mkdtemp(prefix="bench-experiments-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    os.environ.setdefault("DATA_DIR", str(work))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{work / 'bench.sqlite3'}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlworkspace.settings")
    os.environ.setdefault("DEBUG", "0")  # as served: no query log kept in memory
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    return work


RECIPES = {
    "pricing": "recipe_pricing_base",
    "next_best_action": "recipe_nba_base",
    "location_scoring": "recipe_location_base",
    "forecasting": "recipe_forecasting_base",
}


def ensure_postgres_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def train(user, recipe, name: str, seed: int, rows: int):
    from models_registry.services import model_register
    from runs.executor import execute_run
    from runs.models import Run
    from runs.services import run_start

    model = model_register(user=user, name=name, recipe=recipe, recipe_version=recipe.current_version)
    run = run_start(user=user, recipe=recipe, model=model, params={"synthetic": {"rows": rows, "seed": seed}})
    if execute_run(run.id) != "succeeded":
        raise SystemExit(f"training {name} failed: {Run.objects.get(pk=run.id).error}")
    model.refresh_from_db()
    return model


def request_rows(family_name: str, model, count: int) -> list[dict]:
    """`count` rows of the model's input columns from the window after its training data
    (missing numbers filled with the column's median), each with a distinct customer_id (the
    experiment's unit)."""
    import pandas as pd

    from runs import artifacts
    from runs.families import get_family, worlds
    from runs.selectors import model_training_batch

    family = get_family(family_name)
    _, schema = artifacts.load_model(model)
    columns = [c["name"] for c in schema["input_columns"]]
    frame = pd.DataFrame()
    batch = model_training_batch(model)
    while len(frame) < count:
        batch = worlds.resolve(family, {"rows": max(count, 1000)}, after=batch)
        frame = pd.concat([frame, worlds.generate(family, batch)[columns]], ignore_index=True)
    frame = frame.head(count).copy()
    for col in frame.columns:
        # The worlds leave some values missing on purpose; predict takes numbers only.
        if pd.api.types.is_numeric_dtype(frame[col]):
            frame[col] = frame[col].fillna(frame[col].median())
        if pd.api.types.is_datetime64_any_dtype(frame[col]):
            frame[col] = frame[col].dt.strftime("%Y-%m-%d")
    records = json.loads(frame.to_json(orient="records"))
    for i, row in enumerate(records):
        row["customer_id"] = f"cust-{i:07d}"
    return records


def horizon_rows(model, rows: list[dict]) -> list[dict]:
    """The rows within the forecaster's horizon (the periods right after its training data):
    what a caller asks a forecasting model for one row at a time. The batch's later rows lie
    years ahead (a forecaster scores only its own series, so 50,000 rows are long, not wide),
    and each forecast walks every period in between."""
    from datetime import date, timedelta

    stage = next(s for s in model.recipe_version.manifest["pipeline"]["stages"] if s["type"] == "training")
    first = min(date.fromisoformat(r["date"]) for r in rows)
    end = (first + timedelta(days=int(stage["config"]["horizon"]))).isoformat()
    near = [r for r in rows if r["date"] < end]
    if len(near) < 530:
        raise SystemExit(f"only {len(near)} rows within the horizon; single-row requests need 530")
    return near


def bench_family(family_name: str, args, user) -> dict:
    from django.db import connection
    from rest_framework.test import APIClient

    from experiments import services as experiment_services
    from experiments.models import Experiment
    from models_registry.services import model_set_status
    from recipes.baselines import EXAMPLE_ROWS
    from recipes.models import Recipe

    recipe = Recipe.objects.get(pk=RECIPES[family_name])
    for running in Experiment.objects.filter(recipe=recipe, status="running"):  # a database reused
        experiment_services.experiment_stop(experiment=running, user=user, winner="none")
    t0 = time.perf_counter()
    champion = train(user, recipe, f"{family_name} champion", 1, EXAMPLE_ROWS[family_name])
    challenger = train(user, recipe, f"{family_name} challenger", 2, EXAMPLE_ROWS[family_name])
    model_set_status(model=champion, user=user, status="staging")
    model_set_status(model=champion, user=user, status="production")
    champion.refresh_from_db()
    print(f"  trained both models in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = request_rows(family_name, champion, args.rows + args.requests + 50)
    client = APIClient()
    client.force_authenticate(user)
    url = f"/api/ml-development/models/{champion.pk}/predict"

    cpu = {"last": 0.0}  # this process's CPU seconds of the last request

    def post(body_rows: list[dict], profiler=None) -> tuple[float, dict]:
        body = json.dumps({"rows": body_rows})
        cpu_start = time.process_time()
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        response = client.generic("POST", url, body, content_type="application/json")
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - start
        cpu["last"] = time.process_time() - cpu_start
        if response.status_code != 200:
            raise SystemExit(f"predict failed: {response.status_code} {response.content[:500]!r}")
        return elapsed, response.json()

    singles = horizon_rows(champion, rows) if family_name == "forecasting" else rows[args.rows :]

    def single(offset: int) -> dict:
        for i in range(20):  # warm-up: model cache, connections
            post([singles[offset + i]])
        times = [post([singles[offset + 20 + i]])[0] * 1000 for i in range(args.requests)]
        return {
            "p50": statistics.median(times),
            "p95": percentile(times, 0.95),
            "p99": percentile(times, 0.99),
        }

    def batch(label: str) -> dict:
        batch_rows = rows[: args.rows]
        best, first, best_cpu = None, None, None
        for _ in range(args.repeats):
            elapsed, body = post(batch_rows)
            assert len(body["predictions"]) == len(batch_rows)
            first = first if first is not None else elapsed
            best = elapsed if best is None else min(best, elapsed)
            best_cpu = cpu["last"] if best_cpu is None else min(best_cpu, cpu["last"])
        if args.profile:  # one more request, under cProfile (not counted in the figures)
            import cProfile

            args.profile.mkdir(parents=True, exist_ok=True)
            name = f"{family_name}-{label.split()[0].replace('/', '')}-{connection.vendor}.prof"
            profiler = cProfile.Profile()
            post(batch_rows, profiler)
            profiler.dump_stats(args.profile / name)
        return {
            "first_s": first,
            "best_s": best,
            "rows_per_s": len(batch_rows) / best,
            "cpu_s": best_cpu,
            "label": label,
        }

    out = {"family": family_name}
    out["single_none"] = single(0)
    out["batch_none"] = batch("no experiment")
    ab = experiment_services.experiment_start(
        user=user,
        recipe=recipe,
        champion=champion,
        challenger=challenger,
        mode="ab",
        split=0.1,
        unit_key="customer_id",
        horizon=1000,
    )
    out["single_ab"] = single(10)
    out["batch_ab"] = batch("A/B (split 0.1)")
    experiment_services.experiment_stop(experiment=ab, user=user, winner="none")
    experiment_services.experiment_start(
        user=user,
        recipe=recipe,
        champion=champion,
        challenger=challenger,
        mode="shadow",
        unit_key="customer_id",
        horizon=1000,
    )
    out["batch_shadow"] = batch("shadow")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=["pricing"], choices=list(RECIPES))
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after the timed batch requests, one more under cProfile, saved as DIR/<family>-<batch>-<database>.prof",
    )
    args = parser.parse_args()
    environment()
    # One request carries the whole batch: lift the per-request limits for the benchmark.
    os.environ["PREDICT_MAX_ROWS"] = str(max(args.rows, 10_000))
    os.environ["MAX_JSON_BODY_BYTES"] = str(1 << 30)
    ensure_postgres_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    call_command("loaddata", "baseline_recipes", verbosity=0)
    user = get_user_model().objects.filter(username="bench").first()
    user = user or get_user_model().objects.create_superuser("bench", password="bench-pw-1")
    print(
        f"# {platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · {connection.vendor} · {datetime.now():%Y-%m-%d}"
    )
    print(f"# {args.rows:,} rows per batch request, {args.requests} single-row requests\n")
    results = []
    for family_name in args.families:
        print(f"{family_name} …", file=sys.stderr)
        results.append(bench_family(family_name, args, user))
    print("| family | single row, no experiment p50 / p95 ms | single row, A/B p50 / p95 / p99 ms |")
    print("| --- | ---: | ---: |")
    for r in results:
        n, a = r["single_none"], r["single_ab"]
        print(
            f"| {r['family']} | {n['p50']:.1f} / {n['p95']:.1f} | {a['p50']:.1f} / {a['p95']:.1f} / {a['p99']:.1f} |"
        )
    print()
    # CPU s: this process's CPU time of its least costly request (the database's too on SQLite,
    # which runs in-process; not PostgreSQL's): less sensitive than the clock to other load.
    print("| family | batch | first request s | best s | rows/s (best) | CPU s (best) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        for key in ("batch_none", "batch_ab", "batch_shadow"):
            b = r[key]
            print(
                f"| {r['family']} | {b['label']} | {b['first_s']:.2f} | {b['best_s']:.2f} | {b['rows_per_s']:,.0f} "
                f"| {b['cpu_s']:.2f} |"
            )


if __name__ == "__main__":
    main()
