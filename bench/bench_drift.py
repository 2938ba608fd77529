"""Benchmark of the drift check (monitoring/drift.py), optionally against Evidently.

What it measures
----------------
A seeded 1M-row x 25-feature reference frame (20 numeric of several shapes, 5 string
categoricals) and a current frame from the same generators with drift in a few features.
Each configuration runs in a fresh subprocess, which loads its data from Parquet, then
times the work (best and median of ``--repeat`` runs, wall clock) and reports its own
peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``, i.e. data + work) next to the peak
after loading the data alone:

* ``profile``: ``build_profile`` on the 1M reference;
* ``ours PSI|KS @ n``: loading the stored profile JSON + ``drift_report`` of n current
  rows (10k, 100k, 1M), one thread (the default) -- the 1M ones also with ``workers=2``;
* with ``--evidently``: Evidently's ``DataDriftPreset`` (``num_method="psi"`` or
  ``"ks"``, ``cat_method="psi"``) on the same 1M current rows against the full 1M
  reference (Evidently needs the raw reference; our check needs only the profile),
  ``Report.run`` + ``snapshot.dict()``.

Running it
----------
Our check alone, in the project's environment::

    .venv/bin/python bench/bench_drift.py

Side by side with Evidently, in a separate benchmark-only environment (Evidently is not
a runtime requirement of the project). Evidently 0.7.x needs ``plotly<6`` (the project
pins plotly 7) and does not import under pandas 3, so that environment is built from
``bench/drift_requirements.txt`` alone (pandas 2.3) rather than on top of
``requirements.txt``; this script imports ``monitoring/drift.py`` by path, which needs
only numpy/pandas/scipy::

    python3.13 -m venv bench/.venv-drift
    bench/.venv-drift/bin/pip install -r bench/drift_requirements.txt
    DO_NOT_TRACK=1 bench/.venv-drift/bin/python bench/bench_drift.py --evidently

Data and results go to ``bench/results/`` (git-ignored); ``--markdown`` prints the
results table as Markdown.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
N_ROWS = 1_000_000
SIZES = (10_000, 100_000, 1_000_000)
NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
FEATURES = NUMERIC + CATEGORICAL
PSI_THRESHOLD = 0.2
KS_THRESHOLD = 0.1
# drift injected into the current frame (numeric: k reference std; categorical: top category x k)
SHIFT = {"num_00": 0.5, "num_05": 0.25, "num_10": 0.1, "cat_0": 1.5}


def load_drift_module():
    """monitoring/drift.py by path, so the benchmark env needs no Django or project install."""
    spec = importlib.util.spec_from_file_location("ml_monitoring_drift", ROOT / "monitoring" / "drift.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- data


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for i, name in enumerate(NUMERIC):
        shape = i % 5
        if shape == 0:
            cols[name] = rng.normal(100 + i, 10 + i, n)
        elif shape == 1:
            cols[name] = rng.lognormal(1.0, 0.6, n)
        elif shape == 2:
            cols[name] = rng.uniform(-5, 5 + i, n)
        elif shape == 3:
            cols[name] = rng.poisson(4 + i % 7, n).astype(np.float64)  # discrete: tied values
        else:
            cols[name] = rng.exponential(2.0 + i, n)
    for j, name in enumerate(CATEGORICAL):
        k = (5, 12, 30, 8, 60)[j]  # cat_4 has more categories than the profile keeps (50)
        weights = np.random.default_rng(100 + j).dirichlet(np.ones(k) * 2)  # same in ref and current
        labels = np.array([f"{name}_v{c:02d}" for c in range(k)], dtype=object)
        cols[name] = labels[rng.choice(k, n, p=weights)]
    df = pd.DataFrame(cols)
    # a few nulls
    df.loc[rng.random(n) < 0.01, "num_03"] = np.nan
    return df


def prepare(drift) -> dict:
    """Write the reference, the current frames and the stored profile to bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    ref_path = RESULTS / "drift_ref_1m.parquet"
    profile_path = RESULTS / "drift_profile.json"
    cur_paths = {n: RESULTS / f"drift_cur_{n}.parquet" for n in SIZES}
    if not (ref_path.exists() and profile_path.exists() and all(p.exists() for p in cur_paths.values())):
        print("generating data ...", file=sys.stderr)
        ref = make_frame(N_ROWS, seed=1)
        ref.to_parquet(ref_path, index=False)
        cur = make_frame(N_ROWS, seed=2)
        profile = drift.build_profile(ref, FEATURES, seed=0)
        cur = drift.shift_batch(cur, {"num_00": SHIFT["num_00"], "num_05": SHIFT["num_05"]}, profile, seed=3)
        cur = drift.shift_batch(cur, {"num_10": SHIFT["num_10"], "cat_0": SHIFT["cat_0"]}, profile, seed=4)
        cur["num_15"] = cur["num_15"] * 1.3  # a scale change
        for n, path in cur_paths.items():
            cur.iloc[:n].to_parquet(path, index=False)
        profile_path.write_text(json.dumps(profile))
    return {
        "ref": str(ref_path),
        "profile": str(profile_path),
        "cur": {str(n): str(p) for n, p in cur_paths.items()},
        "profile_bytes": profile_path.stat().st_size,
    }


# ---------------------------------------------------------------------------- child


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def timed(fn, repeat: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def run_child(cfg: dict) -> dict:
    kind, repeat = cfg["kind"], cfg["repeat"]
    if kind == "profile":
        drift = load_drift_module()
        ref = pd.read_parquet(cfg["ref"])
        load_rss = peak_rss_mb()
        times, profile = timed(lambda: drift.build_profile(ref, FEATURES, seed=0), repeat)
        summary = {"profile_json_bytes": len(json.dumps(profile))}
    elif kind == "ours":
        drift = load_drift_module()
        cur = pd.read_parquet(cfg["cur"])
        load_rss = peak_rss_mb()
        threshold = PSI_THRESHOLD if cfg["method"] == "PSI" else KS_THRESHOLD

        def check():
            with open(cfg["profile"]) as fh:
                profile = json.load(fh)
            return drift.drift_report(
                profile,
                cur,
                method=cfg["method"],
                threshold=threshold,
                features=FEATURES,
                workers=cfg.get("workers", 1),
            )

        times, report = timed(check, repeat)
        summary = {
            "drifted": sorted(report["drifted_features"]),
            "values": {
                f: round(e.get("psi") if e.get("psi") is not None else e.get("ks"), 4)
                for f, e in report["features"].items()
                if f in SHIFT or f in ("num_01", "cat_1")
            },
        }
    elif kind == "evidently":
        os.environ.setdefault("DO_NOT_TRACK", "1")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        ref = pd.read_parquet(cfg["ref"])
        cur = pd.read_parquet(cfg["cur"])
        load_rss = peak_rss_mb()
        definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
        method = cfg["method"].lower()
        options = {"num_method": method, "cat_method": "psi", "cat_threshold": PSI_THRESHOLD}
        if method == "psi":
            options["num_threshold"] = PSI_THRESHOLD

        def check():
            report = Report([DataDriftPreset(**options)])
            snapshot = report.run(
                Dataset.from_pandas(cur, data_definition=definition),
                Dataset.from_pandas(ref, data_definition=definition),
            )
            return snapshot.dict()

        times, result = timed(check, repeat)
        values = {}
        for metric in result["metrics"]:
            cfg_m = metric.get("config", {})
            if cfg_m.get("type", "").endswith("ValueDrift"):
                values[cfg_m["column"]] = (
                    float(metric["value"]),
                    cfg_m.get("threshold"),
                    cfg_m.get("method"),
                )
        drifted = []
        for col, (value, threshold, m) in values.items():
            is_p_value = m in ("ks",)  # Evidently's KS value is a p-value: drift when below threshold
            if (value < threshold) if is_p_value else (value >= threshold):
                drifted.append(col)
        summary = {
            "drifted": sorted(drifted),
            "values": {
                f: round(v[0], 4) for f, v in values.items() if f in SHIFT or f in ("num_01", "cat_1")
            },
        }
    else:
        raise ValueError(kind)
    return {
        "times_s": [round(t, 4) for t in times],
        "best_s": round(min(times), 4),
        "median_s": round(statistics.median(times), 4),
        "load_peak_rss_mb": round(load_rss, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **summary,
    }


def spawn(cfg: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DO_NOT_TRACK": "1"},
    )
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- machine


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__}
    for name in ("scipy", "evidently", "pyarrow"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": model or platform.processor(),
        "ram_gb": mem_gb,
        "loadavg_at_start": os.getloadavg(),
        "versions": versions,
    }


def markdown(results: list[dict], info: dict) -> str:
    lines = [
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram_gb']} GB RAM; {info['date']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "",
        "| configuration | current rows | best s | median s | peak RSS MB (after load) | drifted |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        res = r["result"]
        if "error" in res:
            lines.append(f"| {r['label']} | {r.get('rows', '')} | error: {res['error']} | | | |")
            continue
        drifted = (
            ", ".join(res.get("drifted", []))
            if "drifted" in res
            else f"profile {res.get('profile_json_bytes')} B"
        )
        lines.append(
            f"| {r['label']} | {r.get('rows', ''):,} | {res['best_s']:.3f} | {res['median_s']:.3f} | "
            f"{res['peak_rss_mb']:.0f} ({res['load_peak_rss_mb']:.0f}) | {drifted} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evidently", action="store_true", help="also run Evidently's DataDriftPreset")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per configuration (default 3)")
    parser.add_argument("--markdown", action="store_true", help="print the results table as Markdown")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return 0

    drift = load_drift_module()
    paths = prepare(drift)
    info = machine()
    print(json.dumps(info), file=sys.stderr)
    configs = [("profile (build_profile, 1M reference)", {"kind": "profile", "ref": paths["ref"]}, N_ROWS)]
    for method in ("PSI", "KS"):
        for n in SIZES:
            configs.append(
                (
                    f"ours {method}",
                    {
                        "kind": "ours",
                        "method": method,
                        "cur": paths["cur"][str(n)],
                        "profile": paths["profile"],
                    },
                    n,
                )
            )
        configs.append(
            (
                f"ours {method}, workers=2",
                {
                    "kind": "ours",
                    "method": method,
                    "cur": paths["cur"][str(N_ROWS)],
                    "profile": paths["profile"],
                    "workers": 2,
                },
                N_ROWS,
            )
        )
        if args.evidently:
            configs.append(
                (
                    f"Evidently {method} (1M reference)",
                    {
                        "kind": "evidently",
                        "method": method,
                        "cur": paths["cur"][str(N_ROWS)],
                        "ref": paths["ref"],
                    },
                    N_ROWS,
                )
            )
    results = []
    for label, cfg, rows in configs:
        cfg["repeat"] = args.repeat
        res = spawn(cfg)
        results.append({"label": label, "rows": rows, "config": cfg, "result": res})
        print(f"{label:45s} {rows:>9,}  {json.dumps(res)}", file=sys.stderr)
    out = {"machine": info, "profile_bytes": paths["profile_bytes"], "results": results}
    name = "drift_bench_evidently.json" if args.evidently else "drift_bench.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2))
    if args.markdown:
        print(markdown(results, info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
