"""Wall time and peak memory of a score run on a large batch, per family (issue #14's target:
1M rows <= 20 s and <= 1.5 GB on 2 cores).

For each family a fresh process trains the baseline on its default synthetic rows (not
measured), then a second fresh process runs the real score pipeline
(runs.pipeline.execute with run_type "score": the synthetic window after the training data
generated, targets dropped, quality checks, the model's input columns, chunked predict,
predictions.parquet and predictions.csv written). Its wall time and peak RSS are the score
run's alone; generating the synthetic batch is inside the time, as it is in a real run.
Two of the stages are shown on their own: the first (generating the batch, dropping its
labels, the quality checks) and the deployment stage (predict in chunks, write
predictions.parquet and predictions.csv).

The score run gets ``threads`` 2 by default, as workers run score runs (``SCORE_THREADS``):
it predicts two chunks at a time (runs.pipeline.score_rows); ``--threads 1`` predicts one.

    .venv/bin/python bench/bench_scoring.py                 # 1,000,000 rows
    .venv/bin/python bench/bench_scoring.py --rows 200000
    .venv/bin/python bench/bench_scoring.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ["forecasting", "pricing", "next_best_action", "location_scoring"]

TRAIN = """
import json, sys
sys.path.insert(0, {root!r})
from recipes import baselines
from runs.families import get_family, worlds
from runs.pipeline import execute
family, out = sys.argv[1], sys.argv[2]
batch = worlds.resolve(get_family(family), {{"rows": baselines.EXAMPLE_ROWS[family] * 4, "seed": 42}})
spec = {{"run_id": "train", "run_type": "train", "family": family, "manifest": baselines.manifest(family),
        "data": {{"synthetic": batch}}, "artifact_dir": out, "model_dir": None, "threads": 1}}
execute(spec, lambda *m: None)
print(json.dumps(batch))
"""

SCORE = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from recipes import baselines
from runs.families import get_family, worlds
from runs.pipeline import execute
family, model_out, out, rows, trained = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
threads = int(sys.argv[6])
batch = worlds.resolve(get_family(family), {{"rows": rows}}, after=trained)
spec = {{"run_id": "score", "run_type": "score", "family": family, "manifest": baselines.manifest(family),
        "data": {{"synthetic": batch}}, "artifact_dir": out, "model_dir": str(Path(model_out) / "model"),
        "model_schema": json.loads((Path(model_out) / "schema.json").read_text()), "threads": threads}}
stages = {{}}
def emit(*m):  # a stage's duration, as the run page shows it
    if m[0] == "stage" and m[2] == "succeeded":
        stages[m[1]] = float(m[3].rstrip("s"))
t0 = time.perf_counter()
result = execute(spec, emit)
seconds = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kinds = [stage["type"] for stage in spec["manifest"]["pipeline"]["stages"]]
print(json.dumps({{"seconds": seconds, "peak_mb": peak_mb, "rows": result["scoring"]["rows"],
                  "data_s": stages.get(0, 0.0), "score_s": stages.get(kinds.index("deployment"), 0.0)}}))
"""


def run(code: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code.format(root=str(ROOT)), *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--families", nargs="*", default=FAMILIES)
    parser.add_argument(
        "--threads", type=int, default=2, help="the score run's threads (workers: SCORE_THREADS)"
    )
    args = parser.parse_args()
    print(
        f"{datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, score run threads {args.threads}, "
        f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print(
        "| family | rows scored | seconds | data + quality s | predict + write s | peak RSS MB | load average after |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for family in args.families:
        with tempfile.TemporaryDirectory() as tmp:
            model_out, score_out = Path(tmp, "train"), Path(tmp, "score")
            trained = run(TRAIN, family, str(model_out))
            figures = run(
                SCORE,
                family,
                str(model_out),
                str(score_out),
                str(args.rows),
                json.dumps(trained),
                str(args.threads),
            )
        print(
            f"| {family} | {figures['rows']:,} | {figures['seconds']:.1f} | {figures['data_s']:.1f} | "
            f"{figures['score_s']:.1f} | {figures['peak_mb']:.0f} | "
            f"{os.getloadavg()[0]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
