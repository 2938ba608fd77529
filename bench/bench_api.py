"""API and page latency on a large workspace, on a quiet and on a busy machine.

Fills a database with 10k recipes (each with a version), 100k runs and 1M monitoring
snapshots (10k of them on one model) using bulk inserts, then measures p50/p95 server time
of the list endpoints (first page, filtered), a detail, the monitoring series and the
pages, in-process with Django's test client (so the figures are server time, no network).
Every row carries the request's CPU time (this process's; the database's is not in it) and
the 1-minute load average at its end (`uptime`'s first figure).

    # PostgreSQL (the target the issue sets); the database is created if missing
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mlworkspace_bench .venv/bin/python bench/bench_api.py
    # smaller/faster: --recipes 1000 --runs 10000 --snapshots 100000
    # reuse an already-filled database: --no-fill
    # quiet: first wait (up to --quiet-timeout s) for the load average to fall below 0.5
    ... bench/bench_api.py --no-fill --quiet
    # busy: N CPU-bound processes run during the measurement (2 = one per core here)
    ... bench/bench_api.py --no-fill --busy 2
    # only some URLs: --only runs,monitoring (substrings of the URL)

Results are printed as a Markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlworkspace.settings")


def ensure_postgres_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def fill(n_recipes: int, n_runs: int, n_snapshots: int) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from models_registry.models import MLModel
    from monitoring.models import MonitorSnapshot
    from recipes.catalog import FAMILIES
    from recipes.models import Recipe, RecipeTag, RecipeVersion
    from runs.models import Run

    call_command("migrate", verbosity=0)
    call_command("loaddata", "baseline_recipes", verbosity=0)
    if Recipe.objects.count() >= n_recipes:
        print("database already filled")
        return
    user, _ = get_user_model().objects.get_or_create(username="bench")
    base = Recipe.objects.get(pk="recipe_pricing_base")
    manifest = base.current_version.manifest
    t0 = time.perf_counter()
    families = list(FAMILIES)
    parents = {f: Recipe.objects.get(model_family=f, level="baseline") for f in families}
    batch = 2000
    for start in range(0, n_recipes, batch):
        recipes, versions, tags = [], [], []
        for i in range(start, min(start + batch, n_recipes)):
            family = families[i % len(families)]
            rid = f"recipe_bench_{i:06d}"
            recipes.append(
                Recipe(
                    id=rid,
                    name=f"Bench recipe {i}",
                    description="industry variant",
                    model_family=family,
                    level="industry",
                    parent=parents[family],
                    status=["draft", "approved", "in_review"][i % 3],
                    owner="bench",
                    created_by=user,
                )
            )
            versions.append(
                RecipeVersion(
                    id=f"ver_bench_{i:06d}",
                    recipe_id=rid,
                    version="1.0.0",
                    manifest=manifest,
                    approved_at=datetime.now(UTC) if i % 3 == 1 else None,
                )
            )
            tags.append(RecipeTag(recipe_id=rid, name=f"tag{i % 50}"))
        Recipe.objects.bulk_create(recipes)
        RecipeVersion.objects.bulk_create(versions)
        RecipeTag.objects.bulk_create(tags)
    print(f"recipes: {time.perf_counter() - t0:.1f}s")
    version = base.current_version
    models = [
        MLModel(
            id=f"model_bench_{i:04d}",
            name=f"Bench model {i}",
            recipe=base,
            recipe_version=version,
            status="production" if i == 0 else "staging",
            created_by=user,
        )
        for i in range(100)
    ]
    MLModel.objects.bulk_create(models)
    t0 = time.perf_counter()
    metrics = {
        "elasticity": -1.7,
        "revenue_lift": 0.02,
        "margin_impact": 0.1,
        "calibration": 0.01,
        "demand_mape": 0.2,
    }
    for start in range(0, n_runs, 5000):
        Run.objects.bulk_create(
            [
                Run(
                    id=f"run_bench_{i:07d}",
                    recipe=base,
                    number=i + 1,
                    recipe_version=version,
                    model_id=f"model_bench_{i % 100:04d}",
                    run_type=["train", "eval", "backtest"][i % 3],
                    status=["succeeded", "failed", "queued"][i % 3],
                    metrics_json=metrics,
                    created_by=user,
                )
                for i in range(start, min(start + 5000, n_runs))
            ]
        )
    print(f"runs: {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    t_start = datetime(2024, 1, 1, tzinfo=UTC)
    drift = {
        "method": "PSI",
        "max_psi": 0.05,
        "features": {"price": {"psi": 0.05, "n_ref": 5000, "n_cur": 5000, "drifted": False}},
    }
    for start in range(0, n_snapshots, 10000):
        MonitorSnapshot.objects.bulk_create(
            [
                MonitorSnapshot(
                    id=f"snap_bench_{i:08d}",
                    model_id=f"model_bench_{i % 100:04d}",
                    captured_at=t_start + timedelta(minutes=i // 100),
                    performance_metrics_json=metrics,
                    drift_metrics_json=drift,
                    data_freshness_json={},
                    alerts_json={},
                    source="scheduled",
                )
                for i in range(start, min(start + 10000, n_snapshots))
            ]
        )
    print(f"snapshots: {time.perf_counter() - t0:.1f}s")
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # What autovacuum does after a bulk load (bench_runs_search.py does the same): planner
            # statistics, and the visibility map that lets a count(*) read an index instead of
            # every row (with ANALYZE alone, counting 100k runs read the whole 34 MB table).
            cursor.execute("VACUUM ANALYZE")


QUIET_LOAD = 0.5


def load1() -> float:
    """The 1-minute load average, as `uptime` prints it first."""
    return os.getloadavg()[0]


def wait_until_quiet(timeout: float) -> None:
    """Wait up to `timeout` seconds for the 1-minute load average to fall below QUIET_LOAD
    and say what it was: a machine that never gets quiet is reported, not hidden."""
    deadline = time.monotonic() + timeout
    while load1() >= QUIET_LOAD and time.monotonic() < deadline:
        time.sleep(5)
    state = "quiet" if load1() < QUIET_LOAD else f"NOT quiet after {timeout:.0f} s"
    print(f"load average {load1():.2f} ({state}; threshold {QUIET_LOAD})")


def burn() -> None:
    """A CPU-bound process for --busy: hashes until it is terminated."""
    digest = b""
    while True:
        digest = hashlib.sha256(digest).digest()


def start_busy(n: int) -> list[multiprocessing.Process]:
    # Spawned, not forked: a fork would share this process's open database connection.
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=burn, daemon=True) for _ in range(n)]
    for process in processes:
        process.start()
    # The load average is a one-minute moving average: after a minute it shows about two
    # thirds of the added load, so the first figure's load is not the machine before.
    time.sleep(60)
    return processes


def measure(client, url: str, repeat: int) -> tuple[float, float, float]:
    """p50 and p95 of the wall time, and p50 of this process's CPU time (ms): the CPU time is
    the request's own work (the database's is in its server process), so it moves much less
    with the machine's load than the wall time does."""
    client.get(url)  # warm
    times, cpu = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--snapshots", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--no-fill", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="wait for a load average below 0.5 first")
    parser.add_argument("--quiet-timeout", type=float, default=300, help="seconds to wait at most")
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes during the measurement")
    parser.add_argument("--only", default="", help="comma-separated substrings: measure only those URLs")
    args = parser.parse_args()
    ensure_postgres_database(os.environ.get("DATABASE_URL", ""))
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    if not args.no_fill:
        fill(args.recipes, args.runs, args.snapshots)
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_superuser": True, "is_staff": True}
    )
    client = Client()
    client.force_login(user)
    api = "/api/ml-development"
    urls = [
        f"{api}/recipes",
        f"{api}/recipes?model_family=pricing&level=industry&status=approved",
        f"{api}/recipes?tag=tag7",
        f"{api}/recipes?search=recipe%2099",
        f"{api}/recipes/recipe_bench_004242",
        f"{api}/recipes/recipe_pricing_base",  # a baseline with 2,500 industry children
        f"{api}/recipes/recipe_pricing_base/versions",
        f"{api}/models?status=staging",
        f"{api}/runs",
        f"{api}/runs?recipe_id=recipe_pricing_base&status=failed",
        f"{api}/runs/run_bench_0004242",
        f"{api}/models/model_bench_0000/monitoring",
        "/model-development/",
        "/model-development/?tab=models",
        "/model-development/?tab=runs",
        "/model-development/?tab=monitoring",
        "/model-development/recipes/recipe_pricing_base",
        "/model-development/models/model_bench_0000",
        "/model-development/runs/run_bench_0004242",
    ]
    if args.only:
        urls = [url for url in urls if any(part in url for part in args.only.split(","))]
    db = settings.DATABASES["default"]
    if args.quiet:
        wait_until_quiet(args.quiet_timeout)
    busy = start_busy(args.busy) if args.busy else []
    mode = f"busy: {args.busy} CPU-bound processes" if busy else ("quiet" if args.quiet else "as is")
    print(
        f"\n{platform.node()} · {os.cpu_count()} cores · {db['ENGINE'].rsplit('.', 1)[-1]} · "
        f"{datetime.now():%Y-%m-%d %H:%M} · {mode} · load average {load1():.2f}"
    )
    print("\n| endpoint | p50 ms | p95 ms | CPU p50 ms | load |\n| --- | ---: | ---: | ---: | ---: |")
    try:
        for url in urls:
            try:
                p50, p95, cpu = measure(client, url, args.repeat)
            except AssertionError as exc:
                print(f"| `{url}` | skipped ({exc.args[0][1]}) | | | |")
                continue
            print(f"| `{url}` | {p50:.1f} | {p95:.1f} | {cpu:.1f} | {load1():.2f} |", flush=True)
    finally:
        for process in busy:
            process.terminate()


if __name__ == "__main__":
    main()
