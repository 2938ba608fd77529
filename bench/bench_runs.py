"""Wall time and peak memory of each baseline's default train run, and at 10× the rows.

Each configuration runs the real pipeline (runs.pipeline.execute: quality, feature prep,
training, evaluation, artifacts, reference profile) on the family's synthetic data in a
fresh process with one numeric thread (RUN_THREADS=1, as in the workers), so the peak RSS
is that run's alone.

    .venv/bin/python bench/bench_runs.py              # default rows and 10x
    .venv/bin/python bench/bench_runs.py --scale 1    # default rows only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from recipes import baselines
from runs.pipeline import execute
family, rows, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spec = {{"run_id": "bench", "run_type": "train", "family": family, "manifest": baselines.manifest(family),
        "data": {{"synthetic": {{"rows": rows, "seed": 42}}}}, "artifact_dir": out, "model_dir": None, "threads": 1}}
t0 = time.perf_counter()
result = execute(spec, lambda *m: None)
print(json.dumps({{"seconds": time.perf_counter() - t0, "metrics": result["metrics"]}}))
"""


def run_one(family: str, rows: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD.format(root=str(ROOT)), family, str(rows), out],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        stdout, stderr = proc.stdout.read(), proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": stderr[-500:]}
        result = json.loads(stdout.strip().splitlines()[-1])
        return {"pipeline_s": result["seconds"], "process_s": wall, "peak_mb": usage.ru_maxrss / 1024}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from runs.families import get_family

    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, nargs="*", default=[1, 10])
    parser.add_argument(
        "--families", nargs="*", default=["pricing", "next_best_action", "location_scoring", "forecasting"]
    )
    args = parser.parse_args()
    print(
        f"{platform.node()} · {os.cpu_count()} cores · {datetime.now():%Y-%m-%d} · one numeric thread per run\n"
    )
    print("| family | rows | pipeline s | process s | peak RSS MB |\n| --- | ---: | ---: | ---: | ---: |")
    for scale in sorted(args.scale):
        for family in args.families:
            rows = get_family(family).DEFAULT_ROWS * scale
            r = run_one(family, rows)
            if "error" in r:
                print(f"| {family} | {rows:,} | failed: {r['error'][-120:]!r} | | |")
            else:
                print(
                    f"| {family} | {rows:,} | {r['pipeline_s']:.1f} | {r['process_s']:.1f} | {r['peak_mb']:.0f} |"
                )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
