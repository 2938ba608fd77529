"""The six forecasting algorithms on the synthetic world: accuracy, interval coverage, time, memory.

Issue #19 (Speed and quality): "At the baseline's default size (200 series × 3 years daily) each
algorithm trains within 60 s and 1.5 GB on 2 cores … A table in bench/README.md: MAPE, coverage
of the 80% interval and time for all six algorithms on the synthetic world's continuation
windows, and on a world with … a trend break".

For each world and algorithm, in a fresh process (its own peak memory):

1. the training batch: ``--series`` series × ``--days`` days of the forecasting world (seed
   ``--seed``); the ``trend_break`` world is the same world whose last ``--break-days`` days of
   the training batch (and everything after) have the family's ``trend_break`` concept;
2. ``fit`` with ``algorithm: <name>``, ``horizon: 28``, ``interval_level: 0.8`` and the
   baseline's other defaults, on ``--threads`` threads (the run's thread budget);
3. the continuation window: the next 28 days of the same world (its prices and promotions as
   the known features), forecast with ``predict``'s path (``evaluate``): MAPE, RMSE and the
   share of actuals inside the 80% interval.

Run:  .venv/bin/python bench/bench_forecast_algorithms.py [--series 200] [--days 1095]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_scale import child_json, peak_rss_mb  # noqa: E402

ALGORITHMS = ("seasonal_naive", "ets", "arima", "lightgbm", "prophet", "lstm")
HORIZON = 28


def manifest(algorithm: str) -> dict:
    return {
        "requirements": {"grain": ["series_id", "date"], "labels": ["sales"]},
        "evaluation": {"validation": {"method": "time_holdout", "test_size": 0.2}},
        "pipeline": {
            "stages": [
                {"name": "prep", "type": "feature_prep", "config": {"frequency": "D"}},
                {
                    "name": "train",
                    "type": "training",
                    "config": {"algorithm": algorithm, "horizon": HORIZON, "interval_level": 0.8},
                },
            ]
        },
    }


def child(config: dict) -> dict:
    import pandas as pd

    from runs.families import forecasting as fc

    series, days, seed = config["series"], config["days"], config["seed"]
    world = {"series": series}
    if config["world"] == "trend_break":
        cut = days - config["break_days"]
        before = fc.generate(0, seed, world=world, window={"start": 0, "periods": cut})
        after = fc.generate(
            0,
            seed,
            world=world,
            window={"start": cut, "periods": config["break_days"]},
            concept="trend_break",
        )
        train = pd.concat([before, after], ignore_index=True)
        # the continuation keeps the break that started `break_days` before it
        test = fc.generate(
            0,
            seed,
            world=world,
            window={"start": cut, "periods": config["break_days"] + HORIZON},
            concept="trend_break",
        )
        test = test[pd.to_datetime(test["date"]) > pd.to_datetime(train["date"]).max()]
    else:
        train = fc.generate(0, seed, world=world, window={"start": 0, "periods": days})
        test = fc.generate(0, seed, world=world, window={"start": days, "periods": HORIZON})
    m = manifest(config["algorithm"])
    started = time.perf_counter()
    model = fc.fit(train, m, threads=config["threads"], log=lambda _m: None)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    metrics, _, _ = fc.evaluate(model, test, m)
    predict_s = time.perf_counter() - started
    return {
        "fit_s": round(fit_s, 1),
        "predict_s": round(predict_s, 1),
        "MAPE": round(metrics["MAPE"], 4),
        "RMSE": round(metrics["RMSE"], 3),
        "coverage_80": round(metrics["coverage"], 3),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--break-days", type=int, default=180)
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--worlds", default="plain,trend_break")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    print(
        f"{os.cpu_count()} CPUs; {args.series} series x {args.days} days, horizon {HORIZON}, {args.threads} threads"
    )
    rows = []
    for world in args.worlds.split(","):
        for algorithm in args.algorithms.split(","):
            config = {
                "world": world,
                "algorithm": algorithm,
                "series": args.series,
                "days": args.days,
                "seed": args.seed,
                "threads": args.threads,
                "break_days": args.break_days,
            }
            result = child_json(__file__, "--child", config, env)
            rows.append({"world": world, "algorithm": algorithm, **result})
            print(json.dumps(rows[-1]), flush=True)
    print("| world | algorithm | MAPE | RMSE | 80% coverage | fit (s) | forecast (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['world']} | {r['algorithm']} | {r['MAPE']:.3f} | {r['RMSE']:.2f} | {r['coverage_80']:.2f} "
            f"| {r['fit_s']} | {r['predict_s']} | {r['peak_rss_mb']} |"
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
    else:
        main()
