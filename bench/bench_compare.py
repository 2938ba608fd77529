"""Wall time and peak memory of comparing two models on one labelled window, per family
(issue #14's target: comparison of two models on 100k rows <= 10 s on 2 cores).

For each family a fresh process trains two models of the baseline recipe in one synthetic
world (not measured): a champion on the world's first window and a challenger that differs
(forecasting: ETS only instead of the automatic choice; the others: trained on the first
half of the training rows), and saves them. A second fresh process loads both, generates and
prepares the next window of the world (about ``--rows`` rows; not timed, but inside its peak
RSS), then times what a comparison does: ``evaluate()`` of both models on that window and
``monitoring.comparison.paired_bootstrap`` (``--replicates``, default 200) over the family's
``BOOTSTRAP_GROUPS`` with its ``prediction_metrics`` (and ``METRIC_COLUMNS``,
``CONSTANT_METRICS``). Its peak RSS is that process's.

    .venv/bin/python bench/bench_compare.py                  # 100,000 rows, 200 replicates
    .venv/bin/python bench/bench_compare.py --rows 20000 --families pricing
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

# The training batch of each world: big enough that its next window holds ~100k rows of
# distinct grain units (forecasting: 1,000 series x 100 days; the others: 100k customers or
# sites, or 97 products x 10 stores x 103 weeks).
TRAIN_ROWS = {
    "forecasting": 1000 * 1095,
    "pricing": 100_000,
    "next_best_action": 100_000,
    "location_scoring": 100_000,
}

TRAIN = """
import copy, json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from recipes import baselines
from runs.families import get_family, stage_config, worlds
family_name, out, rows = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
family = get_family(family_name)
manifest = baselines.manifest(family_name)
batch = worlds.resolve(family, {{"rows": rows, "seed": 42}})
train = family.prepare(worlds.generate(family, batch), manifest)
challenger = copy.deepcopy(manifest)
if family_name == "forecasting":
    stage_config(challenger, "training")["algorithm"] = "ets"
    challenger_rows = train
else:
    challenger_rows = train.iloc[: len(train) // 2]
family.save(family.fit(train, manifest, threads=2, log=lambda *a: None), out / "champion")
family.save(family.fit(challenger_rows, challenger, threads=2, log=lambda *a: None), out / "challenger")
print(json.dumps(batch))
"""

COMPARE = """
import functools, json, resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from recipes import baselines
from recipes.catalog import PRIMARY_METRIC
from runs.families import get_family, worlds
from monitoring.comparison import paired_bootstrap
family_name, out, rows, replicates, trained = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
family = get_family(family_name)
manifest = baselines.manifest(family_name)
models = {{key: family.load(out / key) for key in ("champion", "challenger")}}
window = worlds.resolve(family, {{"rows": rows}}, after=trained)
data = family.prepare(worlds.generate(family, window), manifest)
t0 = time.perf_counter()
evaluated = {{key: family.evaluate(model, data, manifest) for key, model in models.items()}}
t1 = time.perf_counter()
result = paired_bootstrap(
    {{key: value[1] for key, value in evaluated.items()}},
    functools.partial(family.prediction_metrics, manifest=manifest),
    family.BOOTSTRAP_GROUPS,
    constant=family.CONSTANT_METRICS,
    columns=family.METRIC_COLUMNS,
    n=replicates,
)
t2 = time.perf_counter()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
primary = PRIMARY_METRIC[family_name]
print(json.dumps({{"rows": len(data), "groups": result["groups"], "evaluate": t1 - t0, "bootstrap": t2 - t1,
                  "peak_mb": peak_mb, "metric": primary, "difference": result["difference"]["challenger"][primary]}}))
"""


def run(code: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code.format(root=str(ROOT)), *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ci(entry: dict) -> str:
    if entry["low"] is None:
        return f"{entry['value']:.4g} (no interval)"
    return f"{entry['value']:.4g} [{entry['low']:.4g}, {entry['high']:.4g}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--families", nargs="*", default=FAMILIES)
    args = parser.parse_args()
    print(
        f"{datetime.now():%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        "| family | rows | grain units | evaluate x2 s | bootstrap s | total s | peak RSS MB | "
        "primary metric: challenger - champion [95 % interval] |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )
    for family in args.families:
        with tempfile.TemporaryDirectory() as tmp:
            trained = run(TRAIN, family, tmp, str(TRAIN_ROWS[family]))
            f = run(COMPARE, family, tmp, str(args.rows), str(args.replicates), json.dumps(trained))
        total = f["evaluate"] + f["bootstrap"]
        print(
            f"| {family} | {f['rows']:,} | {f['groups']:,} | {f['evaluate']:.1f} | {f['bootstrap']:.1f} | "
            f"{total:.1f} | {f['peak_mb']:.0f} | {f['metric']} {_ci(f['difference'])} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
