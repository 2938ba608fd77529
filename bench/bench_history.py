"""Metric history at 100k points per run (issue #15 §2).

Logs one metric 100,000 times to one run through the one writer
(`runs.services.tracking.tracking_log`, in batches of 1,000 points as an MLflow client's
log-batch sends them), then measures server time in-process with Django's test client (no
network): the downsampled history a plot asks for (`GET /runs/{id}/metrics/{key}/history`,
1,000 points), the full CSV download (`?format=csv`, streamed, all 100k rows read), the
run's metric keys (`GET /runs/{id}/metrics`) and the run page with its "Training curves" card.

    # SQLite (a fresh file under /tmp unless DATABASE_URL says otherwise)
    .venv/bin/python bench/bench_history.py
    # PostgreSQL; the database is created if missing
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_history .venv/bin/python bench/bench_history.py

Prints a Markdown table row per measurement for bench/README.md §9.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlworkspace.settings")
KEY = "valid.loss"


def ensure_postgres_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def fill(points: int):
    """A user and an external run with `points` points of KEY (a noisy decreasing loss)."""
    import math
    import random

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from recipes.models import Recipe
    from runs.models import Run
    from runs.services import run_start, tracking_log

    call_command("migrate", verbosity=0)
    call_command("loaddata", "baseline_recipes", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench_history")
    run = Run.objects.filter(created_by=user, executor="external").order_by("-created_at").first()
    if run is not None and run.metric_points.filter(key=KEY).count() == points:
        print(f"reusing run {run.pk} ({points} points)")
        return user, run, None
    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), executor="external")
    rng = random.Random(0)
    t0 = time.perf_counter()
    batch = 1000
    for start in range(0, points, batch):
        tracking_log(
            run=run,
            metrics=[
                {
                    "key": KEY,
                    "value": 2.0 * math.exp(-i / 20_000) + rng.gauss(0, 0.05),
                    "step": i,
                    "timestamp": 1_764_000_000_000 + i,
                }
                for i in range(start, min(start + batch, points))
            ],
        )
    ingest = time.perf_counter() - t0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE ml_metric_point")
    return user, run, ingest


def timed(call, repeat: int) -> tuple[float, float]:
    call()  # warm-up (connection, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        path = Path(tempfile.gettempdir()) / "bench_history.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    ensure_postgres_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    user, run, ingest = fill(args.points)
    client = Client()
    client.force_login(user)
    api = f"/api/ml-development/runs/{run.pk}"
    checks = {}

    def plot():
        response = client.get(f"{api}/metrics/{KEY}/history", {"max_points": 1000})
        body = response.json()
        checks["plot"] = (response.status_code, body["total"], len(body["points"]), body["downsampled"])

    def download():
        response = client.get(f"{api}/metrics/{KEY}/history", {"format": "csv"})
        size = sum(len(chunk) for chunk in response.streaming_content)
        checks["csv"] = (response.status_code, size)

    def keys():
        response = client.get(f"{api}/metrics")
        checks["keys"] = (response.status_code, response.json()["metrics"][0]["points"])

    def page():
        from runs.models import Run

        Run.objects.filter(pk=run.pk).update(status="succeeded")
        response = client.get(f"/model-development/runs/{run.pk}")
        checks["page"] = (response.status_code, b'id="run-curves"' in response.content)

    rows = [("downsampled history (1,000 of 100k points)", *timed(plot, args.repeat))]
    rows.append(("CSV download (all points, streamed)", *timed(download, max(5, args.repeat // 3))))
    rows.append(("metric keys with counts", *timed(keys, args.repeat)))
    rows.append(("run page with the curves card", *timed(page, max(5, args.repeat // 3))))
    print(f"database: {connection.vendor}; {args.points} points of '{KEY}' on run {run.pk}")
    if ingest is not None:
        print(
            f"ingest: {ingest:.1f} s ({args.points / ingest:,.0f} points/s, batches of 1,000 via tracking_log)"
        )
    print(f"checks: {checks}")
    print("| call | p50 ms | p95 ms |\n| --- | ---: | ---: |")
    for name, p50, p95 in rows:
        print(f"| {name} | {p50 * 1000:.0f} | {p95 * 1000:.0f} |")


if __name__ == "__main__":
    main()
