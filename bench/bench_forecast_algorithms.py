"""The six forecasting algorithms on the synthetic world: accuracy, interval coverage, time, memory.

Issue #19 (Speed and quality): "At the baseline's default size (200 series × 3 years daily) each
algorithm trains within 60 s and 1.5 GB on 2 cores … A table in bench/README.md: MAPE, coverage
of the 80% interval and time for all six algorithms on the synthetic world's continuation
windows, and on a world with holidays and a trend break where Prophet and LSTM should be
expected to help".

For each world and algorithm, in a fresh process (its own peak memory):

1. the training batch: ``--series`` series × ``--days`` days of the forecasting world (seed
   ``--seed``); the ``trend_break`` world is the same world whose last ``--break-days`` days of
   the training batch (and everything after) have the family's ``trend_break`` concept; the
   ``holidays`` world has the family's ``holidays`` concept throughout (GB public holidays:
   demand x1.6 the day before, x0.6 on the day) and ends its training batch on
   ``HOLIDAY_TRAIN_END`` (30 November), so the 28 days forecast hold Christmas Eve, Christmas
   and Boxing Day; ``holidays_trend_break`` is that world with the trend break in its last
   ``--break-days`` days (``holidays_trend_break`` concept);
2. ``fit`` with ``algorithm: <name>``, ``horizon: 28``, ``interval_level: 0.8`` and the
   baseline's other defaults, on ``--threads`` threads (the run's thread budget); in the
   holiday worlds Prophet gets ``holidays: {country: GB}`` (the others have no holiday input:
   the family has no holiday feature, they see the dates through their calendar features);
3. the continuation window: the next 28 days of the same world (its prices and promotions as
   the known features), forecast with ``predict``'s path (``evaluate``): MAPE, RMSE and the
   share of actuals inside the 80% interval; in the holiday worlds also the MAPE of the rows on
   a holiday or the day before one (``MAPE_holidays``).

Run:  .venv/bin/python bench/bench_forecast_algorithms.py [--series 200] [--days 1095]
          [--worlds plain,trend_break,holidays_trend_break]
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
WORLDS = ("plain", "trend_break", "holidays", "holidays_trend_break")
HORIZON = 28
# A holiday world's training batch ends on this day: the 28 days forecast hold Christmas.
HOLIDAY_TRAIN_END = "2025-11-30"


def manifest(algorithm: str, holidays: str | None = None) -> dict:
    """The recipe of one algorithm; ``holidays``: the country whose holidays Prophet models."""
    train = {"algorithm": algorithm, "horizon": HORIZON, "interval_level": 0.8}
    if holidays and algorithm == "prophet":
        train["holidays"] = {"country": holidays}
    return {
        "requirements": {"grain": ["series_id", "date"], "labels": ["sales"]},
        "evaluation": {"validation": {"method": "time_holdout", "test_size": 0.2}},
        "pipeline": {
            "stages": [
                {"name": "prep", "type": "feature_prep", "config": {"frequency": "D"}},
                {"name": "train", "type": "training", "config": train},
            ]
        },
    }


def batches(fc, config: dict):
    """The training batch and the continuation window of ``config["world"]`` (module doc)."""
    import pandas as pd

    name, days, seed = config["world"], config["days"], config["seed"]
    holidays = name.startswith("holidays")
    first = 0
    if holidays:  # the training batch ends on HOLIDAY_TRAIN_END
        first = (pd.Timestamp(HOLIDAY_TRAIN_END) - pd.Timestamp(fc.START_DATE)).days + 1 - days
        if first < 0:
            raise SystemExit(f"--days at most {days + first} for the holiday worlds")

    def window(start: int, periods: int, concept: str | None) -> pd.DataFrame:
        return fc.generate(
            0,
            seed,
            world={"series": config["series"]},
            window={"start": start, "periods": periods},
            concept=concept,
        )

    base = "holidays" if holidays else None
    if name.endswith("trend_break"):
        brk = "holidays_trend_break" if holidays else "trend_break"
        cut = first + days - config["break_days"]
        train = pd.concat(
            [window(first, cut - first, base), window(cut, config["break_days"], brk)], ignore_index=True
        )
        # the continuation keeps the break that started `break_days` before it
        test = window(cut, config["break_days"] + HORIZON, brk)
        test = test[pd.to_datetime(test["date"]) > pd.to_datetime(train["date"]).max()]
    else:
        train = window(first, days, base)
        test = window(first + days, HORIZON, base)
    return train, test.reset_index(drop=True)


def child(config: dict) -> dict:
    import pandas as pd

    from runs.families import forecasting as fc
    from runs.metrics import forecasting as fm

    train, test = batches(fc, config)
    holidays = config["world"].startswith("holidays")
    m = manifest(config["algorithm"], fc.HOLIDAY_COUNTRY if holidays else None)
    started = time.perf_counter()
    model = fc.fit(train, m, threads=config["threads"], log=lambda _m: None)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    metrics, predictions, _ = fc.evaluate(model, test, m)
    predict_s = time.perf_counter() - started
    out = {
        "fit_s": round(fit_s, 1),
        "predict_s": round(predict_s, 1),
        "MAPE": round(metrics["MAPE"], 4),
        "RMSE": round(metrics["RMSE"], 3),
        "coverage_80": round(metrics["coverage"], 3),
        "peak_rss_mb": round(peak_rss_mb()),
    }
    if holidays:  # the rows on a holiday or the day before one
        on, eve = fc.holiday_days(pd.DatetimeIndex(pd.to_datetime(predictions["date"])))
        rows = predictions[on | eve]
        out["MAPE_holidays"] = round(fm.mape(rows["actual"].to_numpy(), rows["prediction"].to_numpy()), 4)
        out["holiday_rows"] = len(rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--break-days", type=int, default=180)
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--worlds", default="plain,trend_break,holidays_trend_break", help=", ".join(WORLDS))
    args = parser.parse_args()
    unknown = sorted(set(args.worlds.split(",")) - set(WORLDS))
    if unknown:
        parser.error(f"unknown worlds {unknown}; choose from {', '.join(WORLDS)}")
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
    print(
        "| world | algorithm | MAPE | MAPE holidays | RMSE | 80% coverage | fit (s) | forecast (s) "
        "| peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        holidays = f"{r['MAPE_holidays']:.3f}" if "MAPE_holidays" in r else "–"
        print(
            f"| {r['world']} | {r['algorithm']} | {r['MAPE']:.3f} | {holidays} | {r['RMSE']:.2f} "
            f"| {r['coverage_80']:.2f} | {r['fit_s']} | {r['predict_s']} | {r['peak_rss_mb']} |"
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
    else:
        main()
