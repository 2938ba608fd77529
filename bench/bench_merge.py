"""Benchmark of recipe lineage on large manifests (recipes/lineage.py, no Django).

What it measures
----------------
A pricing baseline manifest grown to about ``--kb`` KB of JSON (default 200): hundreds of
pipeline stages with nested configs, hundreds of metrics and alerts, long feature-set lists.
"ours" and "theirs" are two independent edits of it — each changes about 5% of the stage
settings, adds and removes stages and feature sets, moves thresholds — with a few edits on
the same paths, so the merge has real conflicts to report. Timed, wall clock, after one
warm-up call, best / median / p95 of ``--repeat`` calls:

* ``merge3(base, ours, theirs)`` — the three-way merge, conflicts listed;
* ``merge3`` with every conflict resolved (the second request of a rebase);
* ``semantic_diff(base, theirs)`` — the upstream diff with bump classification;
* ``provenance`` of ours along base → ours.

Running it::

    .venv/bin/python bench/bench_merge.py            # --kb 200 --repeat 50 --seed 7
    .venv/bin/python bench/bench_merge.py --markdown # a table for bench/README.md
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.lineage import merge3, provenance, semantic_diff  # noqa: E402

BASELINE = Path(__file__).resolve().parents[1] / "recipes" / "baselines" / "pricing.json"


def big_manifest(kb: int, rng: random.Random) -> dict:
    """The pricing baseline grown until its JSON is about `kb` kilobytes."""
    m = json.loads(BASELINE.read_text())
    stages = m["pipeline"]["stages"]
    i = 0
    while len(json.dumps(m)) < kb * 1024:
        stages.insert(
            len(stages) - 1,
            {
                "name": f"segment_model_{i:04d}",
                "type": "feature_prep",
                "description": f"Per-segment preparation {i}",
                "config": {
                    "window": rng.randint(2, 52),
                    "min_rows": rng.randint(50, 500),
                    "columns": [f"col_{i}_{j}" for j in range(6)],
                    "hyperparameters": {"alpha": round(rng.random(), 4), "depth": rng.randint(2, 9)},
                },
            },
        )
        m["requirements"]["feature_sets"]["optional"].append(f"feature_set_{i:04d}")
        if i % 4 == 0:
            m["evaluation"]["metrics"][f"custom_metric_{i:04d}"] = {
                "target": 0.1,
                "threshold_warning": 0.2,
                "threshold_critical": 0.3,
                "direction": "lower",
            }
            m["monitoring"]["alerts"][f"custom_alert_{i:04d}"] = {
                "condition": f"custom_metric_{i:04d} > 0.3",
                "severity": "warning",
            }
        i += 1
    return m


def edit(m: dict, rng: random.Random, tag: str) -> dict:
    """An independent edit touching about 5% of the stages plus some lists and thresholds."""
    out = copy.deepcopy(m)
    stages = out["pipeline"]["stages"]
    for st in rng.sample(stages[:-1], k=max(1, len(stages) // 20)):
        if "hyperparameters" in st.get("config", {}):
            st["config"]["hyperparameters"]["alpha"] = round(rng.random(), 4)
    for k in range(3):
        stages.insert(
            rng.randrange(len(stages)), {"name": f"{tag}_stage_{k}", "type": "feature_prep", "config": {}}
        )
    del stages[rng.randrange(2, len(stages) - 2)]
    optional = out["requirements"]["feature_sets"]["optional"]
    optional.remove(rng.choice(optional))
    optional.append(f"{tag}_feature")
    metric = rng.choice(sorted(out["evaluation"]["metrics"]))
    out["evaluation"]["metrics"][metric]["target"] = round(rng.random() / 10, 4)
    # A path both sides touch: a conflict when the values differ.
    out["monitoring"]["drift"]["threshold"] = 0.1 if tag == "ours" else 0.15
    return out


def timed(fn, repeat: int) -> tuple[float, float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return samples[0], statistics.median(samples), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    base = big_manifest(args.kb, rng)
    ours, theirs = edit(base, rng, "ours"), edit(base, rng, "theirs")
    sizes = [len(json.dumps(x)) / 1024 for x in (base, ours, theirs)]
    first = merge3(base, ours, theirs)
    resolutions = {c["path"]: "theirs" for c in first.conflicts}
    resolved = merge3(base, ours, theirs, resolutions)
    assert resolved.clean, resolved.conflicts
    diff = semantic_diff(base, theirs)
    rows = [
        ("merge3 (conflicts listed)", timed(lambda: merge3(base, ours, theirs), args.repeat)),
        ("merge3 (conflicts resolved)", timed(lambda: merge3(base, ours, theirs, resolutions), args.repeat)),
        ("semantic_diff base → theirs", timed(lambda: semantic_diff(base, theirs), args.repeat)),
        ("provenance base → ours", timed(lambda: provenance([("base", base), ("ours", ours)]), args.repeat)),
    ]
    print(
        f"manifests: base {sizes[0]:.0f} KB, ours {sizes[1]:.0f} KB, theirs {sizes[2]:.0f} KB; "
        f"{len(base['pipeline']['stages'])} stages; {len(first.conflicts)} conflict(s); "
        f"upstream diff {len(diff['changes'])} change(s), suggested {diff['suggested_bump']}"
    )
    if args.markdown:
        print("| operation | best ms | median ms | p95 ms |\n| --- | ---: | ---: | ---: |")
        for name, (best, median, p95) in rows:
            print(f"| {name} | {best:.1f} | {median:.1f} | {p95:.1f} |")
    else:
        for name, (best, median, p95) in rows:
            print(f"{name:32s} best {best:7.1f} ms  median {median:7.1f} ms  p95 {p95:7.1f} ms")


if __name__ == "__main__":
    main()
