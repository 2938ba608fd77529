"""Benchmark of the explanations (runs/explain, issue #17).

What it measures
----------------
For each family, a model trained on its synthetic world at the baseline size
(``DEFAULT_ROWS`` rows, the baseline recipe's manifest; ``--rows`` scales it), on one
thread as a worker runs it:

* ``explain_model`` with the default explain config (``recipes.explain_config.DEFAULTS``:
  500 holdout rows, 16 background rows, 5 permutation repeats, 5 dependence features):
  wall-clock time of the whole stage and of its parts (from its log);
* ``explain_rows`` of ONE row, in-process (what ``POST /models/{id}/predict`` with
  ``"explain": true`` adds to a one-row prediction): p50 / p95 / max over ``--calls`` calls,
  each on a different holdout row, after two warm-up calls, wall clock and the process's
  CPU time (less sensitive to other work on the machine). Target (issue #17 §2): p95 <= 50 ms.

Running it
----------
    .venv/bin/python bench/bench_explain.py               # all four families
    .venv/bin/python bench/bench_explain.py --family pricing --calls 300 --markdown

Training the forecasting baseline (200 series x 3 years, four candidate algorithms) takes
about 10 s; the other families a second or two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "1")

from recipes.explain_config import resolve  # noqa: E402  (after the path and thread setup)
from runs.explain import explain_model, explain_rows  # noqa: E402
from runs.explain.adapters import input_columns  # noqa: E402
from runs.families import get_family  # noqa: E402

FAMILIES = ("pricing", "next_best_action", "location_scoring", "forecasting")


def quiet(_message: str) -> None:
    pass


def train(name: str, scale: float):
    family = get_family(name)
    manifest = json.loads((ROOT / "recipes" / "baselines" / f"{name}.json").read_text())
    frame = family.generate(max(1, int(family.DEFAULT_ROWS * scale)), 0)
    prepared = family.prepare(frame, manifest, log=quiet)
    train_rows, test_rows = family.split(prepared, manifest)
    started = time.perf_counter()
    model = family.fit(train_rows, manifest, threads=1, log=quiet)
    return family, manifest, model, train_rows, test_rows, time.perf_counter() - started


def bench(name: str, scale: float, calls: int) -> dict:
    family, manifest, model, train_rows, test_rows, fit_s = train(name, scale)
    parts: list[str] = []
    started = time.perf_counter()
    explanation = explain_model(
        family, model, train_rows, test_rows, manifest, resolve({}, name), log=parts.append, threads=1
    )
    model_s = time.perf_counter() - started
    doc = explanation.document
    inputs = input_columns(family, manifest, test_rows)
    rows = test_rows[inputs].sample(n=min(calls + 2, len(test_rows)), random_state=1).reset_index(drop=True)
    times, cpu = [], []
    for i in range(len(rows)):
        one = rows.iloc[[i]]
        t0, c0 = time.perf_counter(), time.process_time()
        explain_rows(family, model, one, explanation.background, document=doc)
        if i >= 2:  # two warm-up calls
            times.append((time.perf_counter() - t0) * 1000.0)
            cpu.append((time.process_time() - c0) * 1000.0)
    algorithm = doc["model_algorithm"]
    return {
        "family": name,
        "algorithm": algorithm,
        "train_rows": len(train_rows),
        "fit_s": round(fit_s, 2),
        "explain_model_s": round(model_s, 2),
        "method": doc["method"],
        "features": len(doc["attribution"]["mean_abs"]) if doc["attribution"] else None,
        "background_rows": doc["background_rows"],
        "attributed_rows": len(explanation.contributions),
        "parts": [p.removeprefix("explain: ") for p in parts if " in " in p],
        "row_p50_ms": round(float(np.percentile(times, 50)), 1),
        "row_p95_ms": round(float(np.percentile(times, 95)), 1),
        "row_max_ms": round(float(np.max(times)), 1),
        "row_cpu_p50_ms": round(float(np.percentile(cpu, 50)), 1),
        "row_cpu_p95_ms": round(float(np.percentile(cpu, 95)), 1),
        "calls": len(times),
    }


def machine() -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs (nproc), Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", choices=FAMILIES, action="append")
    parser.add_argument("--rows", type=float, default=1.0, help="scale of DEFAULT_ROWS (default 1)")
    parser.add_argument("--calls", type=int, default=200, help="one-row explain_rows calls per family")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    print(machine())
    results = [bench(name, args.rows, args.calls) for name in (args.family or FAMILIES)]
    for r in results:
        print(json.dumps(r))
    if args.markdown:
        print()
        print(
            "| family | model | train rows | explain_model s | method (features, background) | "
            "attributed rows | one row p50 / p95 / max ms | one row CPU p50 / p95 ms |"
        )
        print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |")
        for r in results:
            print(
                f"| {r['family']} | {r['algorithm']} | {r['train_rows']:,} | {r['explain_model_s']} | "
                f"{r['method']} ({r['features']}, {r['background_rows']}) | {r['attributed_rows']} | "
                f"{r['row_p50_ms']} / {r['row_p95_ms']} / {r['row_max_ms']} | "
                f"{r['row_cpu_p50_ms']} / {r['row_cpu_p95_ms']} |"
            )


if __name__ == "__main__":
    main()
