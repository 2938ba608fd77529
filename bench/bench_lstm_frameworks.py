"""Keras 3 on JAX against PyTorch for the forecasting family's LSTM: import and training time on CPU.

Issue #19 (LSTM): "Choose the lightest maintained framework that does it well on CPU here —
Keras 3 on the JAX backend, or PyTorch — after measuring install size, install time and
training time". This script measures the time half (the install half is pip's wall time and the
venv's growth, bench/README.md §14); the figures are in bench/README.md §14, "Keras 3 on JAX
against PyTorch (the LSTM's framework)".

The same problem in both frameworks, shaped as the family's LSTM sees it at the baseline's
default size (``runs/families/forecasting.py`` ``_fit_lstm`` with ``LSTM_DEFAULTS``, 200 series ×
3 years daily, whose run log reads "60000 windows of 14 periods x 8 inputs"): ``--windows``
one-step-ahead windows of ``--lookback`` periods × ``--inputs`` inputs (synthetic: a seasonal
scaled value, a missing flag, sin/cos cycles and two known features; the target is the next
value), one LSTM layer of ``--units`` units and a dense head of one unit, Adam (learning rate
0.003), MSE, batches of ``--batch-size``, shuffled each epoch, a fixed ``--epochs`` (no early
stopping, no validation pass). Each framework runs in a fresh process of its own venv (the two
frameworks never share one), on ``--threads`` threads:

- PyTorch: ``torch.set_num_threads(threads)`` and ``set_num_interop_threads(1)``;
- JAX: ``XLA_FLAGS="--xla_cpu_multi_thread_eigen=<threads > 1> intra_op_parallelism_threads=<threads>"``
  (XLA's CPU runtime otherwise sizes its pool from the CPUs; on a 2-vCPU machine 2 is its default).

Neither child is pinned to CPUs (``taskset``): on a shared machine a pinned process cannot move
off a core another process is using. ``--env LABEL:KEY=VALUE`` adds a variable to one child's
environment (e.g. ``torch-passive:OMP_WAIT_POLICY=PASSIVE``, OpenMP's threads sleeping instead of
spinning while they wait).

What a child reports: the import time of the framework (``import keras`` with
``KERAS_BACKEND=jax``, or ``import torch``), the first epoch (JAX compiles its step in it), the
median of the later epochs, the recursive forecast the family makes (28 calls on the 200 series'
windows, ``predict_on_batch`` / ``no_grad``), the final training loss and the peak RSS.

The driver runs the children ``--repeats`` times, the frameworks interleaved (the order
alternating), and prints the median of each figure, the ratio, and the load average before and
after each child: other work shares the machine, so the interleaved ratio is the figure to read.

Run (each python is a venv with one framework; none is this project's .venv's business):
  python bench/bench_lstm_frameworks.py --python jax=/tmp/kj/bin/python \\
      --python torch=/tmp/pt/bin/python [--repeats 3] [--epochs 5]
A child alone:  KERAS_BACKEND=jax /tmp/kj/bin/python bench/bench_lstm_frameworks.py --child jax
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FRAMEWORKS = ("jax", "torch")
LEARNING_RATE = 0.003  # LSTM_DEFAULTS["learning_rate"]
FORECAST_STEPS = 28  # the bench's horizon: one network call per period
FORECAST_SERIES = 200  # the baseline's series, forecast together


def problem(windows: int, lookback: int, inputs: int, seed: int = 0):
    """Synthetic windows of the family's shape (float32): step j holds a scaled weekly-seasonal
    value with noise, a missing flag (0), the day of week and of year as sin/cos and
    ``inputs - 6`` known features near 1; the target is the value one period after the window."""
    import numpy as np  # lazy: the driver needs no numpy, a child's venv has it

    rng = np.random.default_rng(seed)
    start = rng.integers(0, 3 * 365, size=(windows, 1))
    day = start + np.arange(lookback + 1)[None, :]
    level = rng.uniform(0.5, 1.5, size=(windows, 1))
    value = level * (1 + 0.3 * np.sin(2 * np.pi * day / 7)) + rng.normal(0, 0.1, size=day.shape)
    cols = [value[:, :-1], np.zeros((windows, lookback))]
    for length in (7, 365.25):
        angle = 2 * np.pi * day[:, 1:] / length
        cols += [np.sin(angle), np.cos(angle)]
    cols += [1 + rng.normal(0, 0.05, size=(windows, lookback)) for _ in range(max(0, inputs - 6))]
    x = np.stack(cols[:inputs], axis=-1).astype(np.float32)
    return x, value[:, -1].astype(np.float32)


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return float("nan")


def run_jax(x, y, cfg: dict, log) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    started = time.perf_counter()
    import keras  # lazy: only the JAX venv has it (the torch child never imports it)

    import_s = time.perf_counter() - started
    log(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    keras.utils.set_random_seed(cfg["seed"])
    net = keras.Sequential(
        [
            keras.Input((x.shape[1], x.shape[2])),
            keras.layers.LSTM(cfg["units"]),
            keras.layers.Dense(1),
        ]
    )
    net.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="mse")
    epoch_s: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_s.append(time.perf_counter() - self.t)

    history = net.fit(
        x, y, epochs=cfg["epochs"], batch_size=cfg["batch_size"], shuffle=True, verbose=0, callbacks=[Timer()]
    )
    window = x[:FORECAST_SERIES]
    started = time.perf_counter()
    for _ in range(FORECAST_STEPS):
        out = net.predict_on_batch(window)
    forecast_s = time.perf_counter() - started
    assert out.shape[0] == len(window)
    return {
        "import_s": import_s,
        "epoch_s": epoch_s,
        "loss": float(history.history["loss"][-1]),
        "forecast_s": forecast_s,
    }


def run_torch(x, y, cfg: dict, log) -> dict:
    started = time.perf_counter()
    import torch  # lazy: only the PyTorch venv has it (the JAX child never imports it)

    import_s = time.perf_counter() - started
    torch.set_num_threads(cfg["threads"])
    torch.set_num_interop_threads(1)
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    torch.manual_seed(cfg["seed"])

    class Net(torch.nn.Module):
        def __init__(self, inputs: int, units: int):
            super().__init__()
            self.lstm = torch.nn.LSTM(inputs, units, batch_first=True)
            self.head = torch.nn.Linear(units, 1)

        def forward(self, batch):
            _, (h, _) = self.lstm(batch)
            return self.head(h[-1]).squeeze(-1)

    net = Net(x.shape[2], cfg["units"])
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(cfg["seed"])
    epoch_s, loss = [], float("nan")
    for _ in range(cfg["epochs"]):
        started = time.perf_counter()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), cfg["batch_size"]):
            idx = order[i : i + cfg["batch_size"]]
            opt.zero_grad()
            batch_loss = torch.nn.functional.mse_loss(net(xt[idx]), yt[idx])
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(idx)
        loss = total / len(xt)
        epoch_s.append(time.perf_counter() - started)
    window = xt[:FORECAST_SERIES]
    net.eval()
    started = time.perf_counter()
    with torch.no_grad():
        for _ in range(FORECAST_STEPS):
            out = net(window).numpy()
    forecast_s = time.perf_counter() - started
    assert out.shape[0] == len(window)
    return {"import_s": import_s, "epoch_s": epoch_s, "loss": loss, "forecast_s": forecast_s}


def child(framework: str, cfg: dict) -> dict:
    def log(message: str) -> None:
        print(message, file=sys.stderr)

    x, y = problem(cfg["windows"], cfg["lookback"], cfg["inputs"], cfg["seed"])
    run = run_jax if framework == "jax" else run_torch
    started = time.perf_counter()
    out = run(x, y, cfg, log)
    epochs = out.pop("epoch_s")
    return {
        "framework": framework,
        "python": sys.version.split()[0],
        **{k: round(v, 3) for k, v in out.items()},
        "first_epoch_s": round(epochs[0], 3),
        "epoch_s": round(statistics.median(epochs[1:] or epochs), 3),
        "epochs_s": [round(e, 3) for e in epochs],
        "total_s": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", action="append", default=[], help="framework=path of a venv's python")
    parser.add_argument("--env", action="append", default=[], help="LABEL:KEY=VALUE for one child")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--windows", type=int, default=60_000)  # LSTM_DEFAULTS["max_windows"]
    parser.add_argument("--lookback", type=int, default=14)  # daily: min(2 x season_length, 56)
    parser.add_argument("--inputs", type=int, default=8)  # value, flag, 2 cycles x sin/cos, 2 known
    parser.add_argument("--units", type=int, default=32)  # LSTM_DEFAULTS["units"]
    parser.add_argument("--batch-size", type=int, default=256)  # LSTM_DEFAULTS["batch_size"]
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    pythons = dict(p.split("=", 1) for p in args.python)  # label -> python; label: framework[-note]
    if not pythons or {label.split("-")[0] for label in pythons} - set(FRAMEWORKS):
        parser.error(f"--python label=path, label a framework ({', '.join(FRAMEWORKS)}) or framework-note")
    cfg = {
        k: getattr(args, k)
        for k in ("epochs", "windows", "lookback", "inputs", "units", "batch_size", "threads", "seed")
    }
    multi = "true" if args.threads > 1 else "false"
    xla = f"--xla_cpu_multi_thread_eigen={multi} intra_op_parallelism_threads={args.threads}"
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
    extra: dict[str, dict[str, str]] = {label: {} for label in pythons}
    for item in args.env:
        label, _, pair = item.partition(":")
        key, _, value = pair.partition("=")
        if label not in extra or not key:
            parser.error(f"--env {item!r}: LABEL:KEY=VALUE with LABEL one of {', '.join(pythons)}")
        extra[label][key] = value
    print(f"{os.cpu_count()} CPUs; {json.dumps(cfg)}; JAX XLA_FLAGS {xla}; extra env {extra}", flush=True)
    rows = []
    names = list(pythons)
    for r in range(args.repeats):
        for label in names if r % 2 == 0 else names[::-1]:
            framework = label.split("-")[0]
            before = load()
            cmd = [pythons[label], __file__, "--child", framework, json.dumps(cfg)]
            child_env = env | ({"XLA_FLAGS": xla} if framework == "jax" else {}) | extra[label]
            out = subprocess.run(cmd, env=child_env, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"the {framework} child failed:\n{out.stderr[-3000:]}")
            row = {
                "repeat": r,
                "label": label,
                **json.loads(out.stdout.strip().splitlines()[-1]),
                "load_before": before,
                "load_after": load(),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    figures = ("import_s", "first_epoch_s", "epoch_s", "forecast_s", "total_s", "peak_rss_mb", "loss")
    medians = {
        f: {k: statistics.median(r[k] for r in rows if r["label"] == f) for k in figures} for f in names
    }
    print("| framework | " + " | ".join(figures) + " |")
    print("|---|" + "---|" * len(figures))
    for f in names:
        print(f"| {f} | " + " | ".join(f"{medians[f][k]:g}" for k in figures) + " |")
    if len(names) >= 2:  # the first two
        a, b = names[:2]
        ratios = {k: round(medians[a][k] / medians[b][k], 2) for k in figures if medians[b][k]}
        print(f"ratio {a}/{b} of the medians: {json.dumps(ratios)}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], json.loads(sys.argv[3]))))
    else:
        main()
