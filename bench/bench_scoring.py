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

``--stream`` scores an uploaded-style Parquet file instead (issue #16 §3): a third fresh process
writes the batch to a Parquet file first (up to 1M rows generated, then copied with the entity
id suffixed — ``site_id`` / ``customer_id`` — to reach ``--rows``: location scoring and next
best action only, whose rows are scored one by one), then the same file is scored twice, each
in a fresh process: in memory (the file read whole, as before) and streamed
(``data.stream_rows`` SCORE_STREAM_ROWS, ``chunk_rows`` SCORE_STREAM_CHUNK_ROWS: chunks read,
predicted and appended to the files one at a time). ``--skip-memory`` leaves the in-memory
run out (a batch larger than the machine's memory).

    .venv/bin/python bench/bench_scoring.py --stream --rows 10000000 --families location_scoring
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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
data = json.loads(sys.argv[7]) if len(sys.argv) > 7 else None  # a file to score (--stream)
if data is None:
    data = {{"synthetic": worlds.resolve(get_family(family), {{"rows": rows}}, after=trained)}}
spec = {{"run_id": "score", "run_type": "score", "family": family, "manifest": baselines.manifest(family),
        "data": data, "artifact_dir": out, "model_dir": str(Path(model_out) / "model"),
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
                  "chunks": (result["scoring"].get("streamed") or {{}}).get("chunks"),
                  "data_s": stages.get(0, 0.0), "score_s": stages.get(kinds.index("deployment"), 0.0)}}))
"""

# --stream: the batch as a Parquet file of `rows` rows (row groups of 1M rows, as pandas and
# pyarrow write them), generated once (at most 1M rows) and copied with its entity id suffixed.
WRITE = """
import json, sys
sys.path.insert(0, {root!r})
import pyarrow as pa, pyarrow.parquet as pq
from runs.families import get_family, worlds
family, path, rows, trained = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
fam = get_family(family)
block = worlds.generate(fam, worlds.resolve(fam, {{"rows": min(rows, 1_000_000)}}, after=trained))
writer, written, copy = None, 0, 0
while written < rows:
    part = block.iloc[: rows - written].copy()
    if copy:
        part[fam.GRAIN] = part[fam.GRAIN].astype(str) + f"_{{copy}}"
    table = pa.Table.from_pandas(part, preserve_index=False)
    writer = writer or pq.ParquetWriter(path, table.schema)
    writer.write_table(table, row_group_size=1_000_000)
    written, copy = written + len(part), copy + 1
writer.close()
print(json.dumps({{"rows": written}}))
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
    parser.add_argument("--stream", action="store_true", help="score a Parquet file: in memory vs streamed")
    parser.add_argument("--stream-rows", type=int, default=1_000_000, help="SCORE_STREAM_ROWS")
    parser.add_argument("--chunk-rows", type=int, default=500_000, help="SCORE_STREAM_CHUNK_ROWS")
    parser.add_argument("--skip-memory", action="store_true", help="--stream: leave the in-memory run out")
    args = parser.parse_args()
    if args.stream:
        stream(args)
        return
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


def stream(args) -> None:
    """--stream: one Parquet file per family scored in memory and streamed, each in a fresh process."""
    print(
        f"{datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, score run threads {args.threads}, stream_rows "
        f"{args.stream_rows:,}, chunk_rows {args.chunk_rows:,}, "
        f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print(
        "| family | rows scored | path | chunks | seconds | data + quality s | predict + write s | "
        "peak RSS MB | load average after |\n| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for family in args.families:
        with tempfile.TemporaryDirectory() as tmp:
            model_out, path = Path(tmp, "train"), Path(tmp, "batch.parquet")
            trained = run(TRAIN, family, str(model_out))
            run(WRITE, family, str(path), str(args.rows), json.dumps(trained))
            file = {"path": str(path), "format": "parquet", "name": path.name}
            streamed = {**file, "stream_rows": args.stream_rows, "chunk_rows": args.chunk_rows}
            ways = [("streamed", streamed)] + ([] if args.skip_memory else [("in memory", file)])
            for label, data in ways:
                out = Path(tmp, label.replace(" ", "_"))
                figures = run(
                    SCORE,
                    family,
                    str(model_out),
                    str(out),
                    str(args.rows),
                    json.dumps(trained),
                    str(args.threads),
                    json.dumps(data),
                )
                print(
                    f"| {family} | {figures['rows']:,} | {label} | {figures['chunks'] or '–'} | "
                    f"{figures['seconds']:.1f} | {figures['data_s']:.1f} | {figures['score_s']:.1f} | "
                    f"{figures['peak_mb']:.0f} | {os.getloadavg()[0]:.1f} |",
                    flush=True,
                )
                shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
