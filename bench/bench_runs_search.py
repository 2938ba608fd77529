"""Searching runs by metrics, params and tags (issue #15 §1) on a large workspace.

Fills a database with 100,000 runs, each with ~5 params, ~5 metrics (the latest-value rows a
search reads) and 2 tags, with bulk inserts, then measures p50/p95 server time of the runs
list with `filter=` and `order_by=` (first page of 100) through the whole stack in-process
with Django's test client (URL routing, auth, the filter parser, queries, serialisation; no
network), as bench/bench_api.py does.

    # SQLite: a temporary database file (removed at the end unless --keep)
    .venv/bin/python bench/bench_runs_search.py
    # PostgreSQL (the database is created if missing)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_search .venv/bin/python bench/bench_runs_search.py
    # smaller: --runs 10000; reuse a filled database: --no-fill (with DATABASE_URL)

Results are printed as a Markdown table for bench/README.md §8.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlworkspace.settings")

FILTER = 'metrics.MAPE < 0.15 and params.max_depth = 6 and tags.team = "eu"'
API = "/api/ml-development/runs"
URLS = [
    ("filter + order by a metric", f"{API}?filter={quote(FILTER)}&order_by=metrics.MAPE&page_size=100"),
    ("order by a metric only", f"{API}?order_by=metrics.MAPE&page_size=100"),
    ("order by a metric, descending", f"{API}?order_by={quote('metrics.MAPE DESC')}&page_size=100"),
    ("filter only", f"{API}?filter={quote(FILTER)}&page_size=100"),
    (
        "filter + recipe_id + order",
        f"{API}?recipe_id=recipe_forecasting_base&filter={quote(FILTER)}&order_by=metrics.MAPE&page_size=100",
    ),
    ("plain list (for comparison)", f"{API}?page_size=100"),
]


def ensure_postgres_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def fill(n_runs: int, seed: int = 15) -> None:
    """100k runs over the four baselines: params max_depth 3..10, learning_rate, num_leaves,
    n_estimators, algorithm; metrics MAPE (5 % of runs lack it, 1 % are NaN), RMSE, MAE,
    bias, coverage; tags team (eu/us/apac) and owner."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from recipes.models import Recipe
    from runs.models import Run, RunMetric, RunParam, RunTag

    call_command("migrate", verbosity=0)
    call_command("loaddata", "baseline_recipes", verbosity=0)
    if Run.objects.count() >= n_runs:
        print("database already filled")
        return
    rng = random.Random(seed)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    recipes = list(Recipe.objects.filter(level="baseline").order_by("id"))
    versions = {r.pk: r.current_version for r in recipes}
    # The bench writes its own creation times (spread over a year), as a real history has.
    created = Run._meta.get_field("created_at")
    created.auto_now_add = False
    t0 = time.perf_counter()
    start_at = datetime(2026, 1, 1, tzinfo=UTC)
    batch = 5000
    ms = int(start_at.timestamp() * 1000)
    for start in range(0, n_runs, batch):
        runs, params, metrics, tags = [], [], [], []
        for i in range(start, min(start + batch, n_runs)):
            recipe = recipes[i % len(recipes)]
            run_id = f"run_search_{i:07d}"
            when = start_at + timedelta(minutes=5 * i)
            values = {
                "RMSE": rng.uniform(1, 50),
                "MAE": rng.uniform(1, 40),
                "bias": rng.uniform(-0.2, 0.2),
                "coverage": rng.uniform(0.6, 0.99),
            }
            roll = rng.random()
            if roll >= 0.06:
                values["MAPE"] = rng.uniform(0.05, 0.5)
            elif roll >= 0.05:
                values["MAPE"] = float("nan")
            hyper = {
                "max_depth": str(rng.randint(3, 10)),
                "learning_rate": f"{rng.choice([0.01, 0.03, 0.05, 0.1, 0.2])}",
                "num_leaves": str(rng.choice([15, 31, 63, 127])),
                "n_estimators": str(rng.choice([100, 200, 500])),
                "algorithm": rng.choice(["lightgbm", "ridge", "gbr"]),
            }
            runs.append(
                Run(
                    id=run_id,
                    recipe=recipe,
                    recipe_version=versions[recipe.pk],
                    number=i // len(recipes) + 1,
                    run_type="train",
                    status="succeeded",
                    executor="external",
                    params_json=hyper,
                    metrics_json={k: v for k, v in values.items() if v == v},
                    created_by=user,
                    created_at=when,
                    started_at=when,
                    finished_at=when + timedelta(minutes=3),
                )
            )
            for key, text in hyper.items():
                number = float(text) if key != "algorithm" else None
                params.append(RunParam(run_id=run_id, key=key, value=text, value_num=number))
            for key, value in values.items():
                nan = value != value
                metrics.append(
                    RunMetric(
                        run_id=run_id,
                        key=key,
                        value=None if nan else value,
                        is_nan=nan,
                        step=0,
                        timestamp=ms + i * 300_000,
                    )
                )
            tags.append(RunTag(run_id=run_id, key="team", value=rng.choice(["eu", "us", "apac"])))
            tags.append(RunTag(run_id=run_id, key="owner", value=f"user{rng.randint(1, 40)}"))
        Run.objects.bulk_create(runs)
        RunParam.objects.bulk_create(params)
        RunMetric.objects.bulk_create(metrics)
        RunTag.objects.bulk_create(tags)
    created.auto_now_add = True
    print(f"filled {n_runs} runs in {time.perf_counter() - t0:.1f}s")
    if connection.vendor == "postgresql":
        # What autovacuum does after a bulk load: planner statistics, and the visibility map
        # that lets COUNT and index-only scans skip the table. SQLite is left as a workspace
        # runs it: without ANALYZE statistics.
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def measure(client, url: str, repeat: int) -> tuple[float, float, float, int | None]:
    """p50 and p95 wall time, p50 CPU time of this process (the whole request in-process: with
    SQLite that is nearly all of it; with PostgreSQL the server's work is not in it), ms."""
    first = client.get(url)  # warm
    assert first.status_code == 200, (url, first.status_code, first.content[:300])
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        response = client.get(url)
        cpu.append((time.process_time() - c0) * 1000)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    times.sort()
    return (
        statistics.median(times),
        times[int(0.95 * (len(times) - 1))],
        statistics.median(cpu),
        first.json()["count"],
    )


def matches(user, path: str) -> int:
    """How many runs a search matches (a filtered page does not count them; counted here,
    outside the timings)."""
    from django.http import QueryDict

    from runs.filters import RunFilter
    from runs.selectors import run_list

    query = QueryDict(path.split("?", 1)[1])
    filterset = RunFilter(query, queryset=run_list(user))
    assert filterset.is_valid(), filterset.errors
    return filterset.qs.count()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--no-fill", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary SQLite file")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    temp = None
    if not url:
        temp = Path(tempfile.mkdtemp(prefix="bench-search-")) / "search.sqlite3"
        os.environ["DATABASE_URL"] = f"sqlite:///{temp}"
    ensure_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    try:
        if not args.no_fill:
            fill(args.runs)
        user, _ = get_user_model().objects.get_or_create(
            username="bench-admin", defaults={"is_superuser": True, "is_staff": True}
        )
        client = Client()
        client.force_login(user)
        db = settings.DATABASES["default"]
        print(
            f"\n{platform.node()} · {os.cpu_count()} cores · {db['ENGINE'].rsplit('.', 1)[-1]} · "
            f"{datetime.now():%Y-%m-%d} · load {os.getloadavg()[0]:.2f}"
        )
        print("\n| request | matches | p50 ms | p95 ms | CPU p50 ms |\n| --- | ---: | ---: | ---: | ---: |")
        for label, path in URLS:
            p50, p95, cpu, count = measure(client, path, args.repeat)
            if count is None:
                count = matches(user, path)
            print(f"| {label} | {count:,} | {p50:.1f} | {p95:.1f} | {cpu:.1f} |")
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        if temp is not None and not args.keep:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{temp}{suffix}").unlink(missing_ok=True)
            temp.parent.rmdir()
        elif temp is not None:
            print(f"\nkept {temp}")


if __name__ == "__main__":
    main()
