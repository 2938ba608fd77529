"""The file store and data larger than memory (issue #16, "Speed"): upload + profile of a
large Parquet dataset, and the S3 round-trip overheads.

``--kind upload`` (the default): writes ``--rows`` rows of the location-scoring world (unique
site ids) into a Parquet file row group by row group, then, in a fresh process on a fresh
SQLite workspace, does what an upload does — ``runs.services.dataset_create`` (its shape from
the footer, the file stored) for the baseline location recipe — and what the worker's profile
task does — ``dataset_profile``: the file fetched back from the store and checked, its columns
profiled chunk by chunk over every row, the recipe's checks on the sample a run would train on
(TRAIN_MAX_ROWS). It reports wall time and the process's peak RSS (VmHWM)::

    .venv/bin/python bench/bench_storage.py --kind upload --rows 10000000
    .venv/bin/python bench/bench_storage.py --kind upload --rows 50000000 --scratch /var/tmp/bench-up

``--kind flow`` (issue #16's "Done when"): one ``--rows`` row dataset (default 50M) through
every step with the DEFAULT limits (any limit variable in the environment is removed for the
children), on a fresh SQLite workspace, each step in its own fresh process: the upload and the
worker's profile; a train run of the baseline location recipe on it (a model registered first,
as the API does: the train run's deployment stage attaches the result), executed by
``runs.executor.execute_run`` as a worker does, the pipeline in the executor's own child
process; a monitoring check of the model on the dataset (``monitoring.services.model_check``);
a score run of the dataset (or, with ``--score-rows N``, of a dataset of its first N rows,
uploaded as scoring input in a process of its own first). It reports per step the wall seconds,
the step process's peak RSS and, for the runs, the peak RSS of the executor's child::

    .venv/bin/python bench/bench_storage.py --kind flow --rows 50000000 --scratch /var/tmp/bench-flow

``--kind s3``: put and checked fetch (mlworkspace.storage) of 1 MB and 100 MB files, on the
local media folder and on a real S3-compatible server on loopback (moto in server mode, as the
tests use: the figures are the client's and the protocol's overhead, not a cloud's network)::

    .venv/bin/python bench/bench_storage.py --kind s3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlworkspace.settings")

from bench_scale import child_json, peak_rss_mb  # noqa: E402 - the bench folder is on sys.path

ROW_GROUP = 1_000_000
RECIPE = "recipe_location_base"


def write_sites(path: Path, rows: int) -> float:
    """`rows` location-scoring rows, one row group of ROW_GROUP at a time (memory: one group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runs.families import get_family

    family = get_family("location_scoring")
    t0 = time.perf_counter()
    partial = path.with_suffix(".part")
    writer = None
    try:
        for index, start in enumerate(range(0, rows, ROW_GROUP)):
            n = min(ROW_GROUP, rows - start)
            frame = family.generate(n, 100 + index)
            frame["site_id"] = [f"s{start + i:09d}" for i in range(n)]  # unique across groups
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table)
            print(f"\r  written {start + n:,} of {rows:,} rows", end="", file=sys.stderr, flush=True)
    finally:
        if writer is not None:
            writer.close()
    print(file=sys.stderr)
    partial.rename(path)
    return time.perf_counter() - t0


class _OnDisk:
    """An upload Django has already streamed to disk (TemporaryUploadedFile's interface)."""

    def __init__(self, path: Path):
        self.path, self.name, self.size = path, path.name, path.stat().st_size

    def temporary_file_path(self) -> str:
        return str(self.path)

    def chunks(self, size: int = 1 << 20):
        with open(self.path, "rb") as fh:
            while chunk := fh.read(size):
                yield chunk


def upload_child(config: dict) -> dict:
    """In a fresh process: a migrated workspace (not timed), then the upload and the profile."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("loaddata", "baseline_recipes", verbosity=0)
    from recipes.models import Recipe
    from runs.services import dataset_create, dataset_profile

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    recipe = Recipe.objects.get(pk=RECIPE)
    before = peak_rss_mb()
    t0 = time.perf_counter()
    dataset = dataset_create(user=user, upload=_OnDisk(Path(config["data"])), recipe=recipe)
    uploaded = time.perf_counter() - t0
    status = dataset_profile(dataset_id=dataset.pk)
    profiled = time.perf_counter() - t0 - uploaded
    dataset.refresh_from_db()
    return {
        "rows": dataset.row_count,
        "status": status,
        "error": dataset.error,
        "valid": dataset.validation_json.get("valid"),
        "problems": dataset.validation_json.get("errors", [])[:3],
        "sample_rows": dataset.validation_json.get("sample_rows"),
        "columns": len(dataset.columns_json),
        "upload_s": uploaded,
        "profile_s": profiled,
        "peak_mb": peak_rss_mb(),
        "before_mb": before,
    }


def workspace(args, *, prefix: str) -> tuple[bool, Path, Path, Path]:
    """(keep, scratch, data file, fresh workspace): the scratch folder (``--scratch``, kept, or a
    temporary one), the sites file's path in it, and an empty workspace whose data and media
    folders this process (and Django, set up here) uses."""
    keep = args.scratch is not None
    scratch = Path(args.scratch) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    scratch.mkdir(parents=True, exist_ok=True)
    work = scratch / "workspace"
    shutil.rmtree(work, ignore_errors=True)
    os.environ.update({"DATA_DIR": str(work / "data"), "MEDIA_ROOT": str(work / "media")})
    import django

    django.setup()
    return keep, scratch, scratch / f"sites-{args.rows}.parquet", work


def upload_main(args) -> None:
    keep, scratch, data, work = workspace(args, prefix="bench-storage-")
    try:
        if data.exists():
            print(f"reusing {data} ({data.stat().st_size / 1e9:.2f} GB)")
        else:
            seconds = write_sites(data, args.rows)
            print(f"wrote {data} ({data.stat().st_size / 1e9:.2f} GB) in {seconds:.0f} s")
        size = data.stat().st_size
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
            "WORK_DIR": str(work / "scratch"),
            # An upload of this size is refused by the default limits (200 MB, 200M cells):
            # the bench measures what happens once an operator raises them.
            "DATASET_MAX_BYTES": str(size + 1),
            "DATASET_MAX_CELLS": str(10**12),
            "DATASET_MAX_ROWS": str(args.rows),
        }
        result = child_json(__file__, "--upload-child", {"data": str(data)}, env)
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{machine_line()}\n")
    print(
        f"`bench/bench_storage.py --kind upload --rows {args.rows}`: {result['rows']:,} rows × "
        f"{result['columns']} columns, {size / 1e9:.2f} GB of Parquet, local file store\n"
    )
    print(
        "| rows | upload s (shape + store) | profile s (fetch + check + chunks + sample) | status | sample rows "
        "| peak RSS MB (before) |"
    )
    print("| ---: | ---: | ---: | --- | ---: | ---: |")
    print(
        f"| {result['rows']:,} | {result['upload_s']:.1f} | {result['profile_s']:.1f} | {result['status']}"
        f"{'' if result['valid'] else ' (problems: ' + '; '.join(result['problems']) + ')'} "
        f"| {result['sample_rows'] or '—'} | {result['peak_mb']:.0f} ({result['before_mb']:.0f}) |"
    )


# --------------------------------------------------------------------------- one dataset, every step

# The settings a limit or a chunk size is read from: removed from the children's environment,
# so the flow measures the defaults (mlworkspace/settings.py), whatever this shell exports.
LIMIT_SETTINGS = (
    "DATASET_MAX_BYTES",
    "DATASET_MAX_ROWS",
    "DATASET_MAX_COLUMNS",
    "DATASET_MAX_CELLS",
    "DATASET_CHECK_SAMPLE_ROWS",
    "DATASET_INLINE_PROFILE_BYTES",
    "DATASET_INLINE_PROFILE_ROWS",
    "TRAIN_MAX_ROWS",
    "CHECK_STREAM_ROWS",
    "CHECK_CHUNK_ROWS",
    "CHECK_SAMPLE_ROWS",
    "SCORE_STREAM_ROWS",
    "SCORE_STREAM_CHUNK_ROWS",
    "SCORE_THREADS",
    "RUN_THREADS",
    "DASK_SCHEDULER_ADDRESS",
)


def _parents() -> dict[int, int]:
    """{pid: parent pid} of every process, from /proc/<pid>/stat."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:  # it ended meanwhile
                continue
            out[int(entry.name)] = int(fields[1])
    return out


def _status_mb(pid: int, field: str = "VmHWM") -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class ChildPeaks:
    """The peak RSS (VmHWM) of this process's descendants, read from /proc every `interval`
    seconds while they live: the executor runs the pipeline in a spawned child whose VmHWM is
    gone once it exits (growth in its last interval is missed). ``rusage_mb`` is
    getrusage(RUSAGE_CHILDREN).ru_maxrss afterwards, the largest reaped child's maxrss: an
    upper bound, since on Linux it also counts the RSS the child had from its parent at fork."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.interval, self.peaks = interval, {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="child-peaks")

    def _poll(self) -> None:
        me = os.getpid()
        while not self._done.wait(self.interval):
            parents = _parents()
            mine, frontier = set(), {me}
            while frontier:
                frontier = {pid for pid, parent in parents.items() if parent in frontier} - mine
                mine |= frontier
            for pid in mine:
                peak = _status_mb(pid)
                if peak is None:
                    continue
                if pid not in self.peaks:
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
                    except OSError:
                        command = "?"
                    self.peaks[pid] = {"command": command[:120], "peak_mb": peak}
                self.peaks[pid]["peak_mb"] = max(self.peaks[pid]["peak_mb"], peak)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def summary(self) -> dict:
        import resource

        largest = max(self.peaks.values(), key=lambda p: p["peak_mb"], default=None)
        return {
            "child_peak_mb": largest and largest["peak_mb"],
            "child_command": largest and largest["command"],
            "children": len(self.peaks),
            "rusage_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        }


def _run_lines(run, *needles: str) -> list[str]:
    """The run's log lines that contain one of `needles` (all of them when none is given)."""
    lines = run.logs.order_by("seq").values_list("level", "message")
    return [
        f"{level}: {message}" for level, message in lines if not needles or any(n in message for n in needles)
    ]


def flow_child(config: dict) -> dict:
    """In a fresh process: one step of the flow (config["step"]) on the workspace the setup
    step migrated; wall seconds of the step's own calls, this process's peak RSS."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from recipes.models import Recipe

    step = config["step"]
    if step == "setup":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("loaddata", "baseline_recipes", verbosity=0)
        get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
        return {"settings": {name: getattr(settings, name) for name in LIMIT_SETTINGS}}

    from models_registry.models import MLModel
    from runs.executor import execute_run
    from runs.models import Dataset
    from runs.services import dataset_create, dataset_profile, run_start

    user = get_user_model().objects.get(username="bench")
    recipe = Recipe.objects.get(pk=RECIPE)
    before = peak_rss_mb()
    out: dict = {"before_mb": before}
    t0 = time.perf_counter()
    if step == "upload":
        upload = _OnDisk(Path(config["data"]))
        dataset = dataset_create(user=user, upload=upload, recipe=recipe, purpose=config["purpose"])
        out["upload_s"] = time.perf_counter() - t0
        status = dataset_profile(dataset_id=dataset.pk)
        dataset.refresh_from_db()
        out.update(
            dataset_id=dataset.pk,
            outcome=status,
            ok=status == "ready" and dataset.validation_json.get("valid") is True,
            rows=dataset.row_count,
            columns=len(dataset.columns_json),
            sample_rows=dataset.validation_json.get("sample_rows"),
            problems=dataset.validation_json.get("errors", [])[:3]
            + ([dataset.error] if dataset.error else []),
        )
    elif step == "train":
        dataset = Dataset.objects.get(pk=config["dataset_id"])
        from models_registry.services import model_register

        model = model_register(
            user=user, name="Flow model", recipe=recipe, recipe_version=recipe.current_version
        )
        run = run_start(user=user, recipe=recipe, model=model, dataset=dataset)
        with ChildPeaks() as peaks:
            outcome = execute_run(run.id)
        run.refresh_from_db()
        model.refresh_from_db()
        out.update(
            peaks.summary(),
            run_id=run.pk,
            model_id=model.pk,
            outcome=outcome,
            ok=outcome == "succeeded" and model.training_run_id == run.pk,
            error=run.error,
            attached=model.training_run_id == run.pk,
            sample_lines=_run_lines(run, "TRAIN_MAX_ROWS", "training LightGBM"),
            log=_run_lines(run),
            metrics={k: v for k, v in (run.metrics_json or {}).items() if isinstance(v, (int, float))},
        )
    elif step == "check":
        from monitoring.services import model_check

        model = MLModel.objects.select_related("recipe", "recipe_version").get(pk=config["model_id"])
        snapshot = model_check(model=model, source="check", dataset_id=config["dataset_id"])
        drift = snapshot.drift_metrics_json or {}
        features = drift.get("features") or {}
        out.update(
            outcome="snapshot recorded",
            ok=True,
            rows=snapshot.row_count,
            batch=(snapshot.data_freshness_json or {}).get("batch"),
            drift_figures=sum(
                1
                for entry in features.values()
                if entry.get("psi") is not None or entry.get("ks") is not None
            ),
            drift_features=len(features),
            max_psi=drift.get("max_psi"),
            drifted=drift.get("drifted_features"),
            prediction_psi=(drift.get("prediction") or {}).get("psi"),
            attribution=sorted((drift.get("explain") or {}).keys())[:6],
            performance=sorted((snapshot.performance_metrics_json or {}).keys()),
            alerts=sorted((snapshot.alerts_json or {}).keys()),
        )
    elif step == "score":
        dataset = Dataset.objects.get(pk=config["dataset_id"])
        model = MLModel.objects.get(pk=config["model_id"])
        run = run_start(user=user, recipe=recipe, model=model, run_type="score", dataset=dataset)
        with ChildPeaks() as peaks:
            outcome = execute_run(run.id)
        run.refresh_from_db()
        scoring = (run.artifacts_json or {}).get("scoring") or {}
        files = (run.artifacts_json or {}).get("files") or {}
        out.update(
            peaks.summary(),
            run_id=run.pk,
            outcome=outcome,
            ok=outcome == "succeeded" and scoring.get("rows") == dataset.row_count,
            error=run.error,
            dataset_rows=dataset.row_count,
            rows=scoring.get("rows"),
            streamed=scoring.get("streamed"),
            files={name: entry.get("size") for name, entry in files.items()},
            stream_lines=_run_lines(run, "SCORE_STREAM_ROWS", "scoring: streamed"),
            log=_run_lines(run),
        )
    else:
        raise SystemExit(f"unknown step {step!r}")
    out.update(wall_s=time.perf_counter() - t0, peak_mb=peak_rss_mb())
    return out


def head_file(source: Path, dest: Path, rows: int) -> None:
    """The first `rows` rows of a Parquet file, copied row group by row group (memory: one)."""
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(source)
    writer, left = None, rows
    try:
        for index in range(reader.num_row_groups):
            if left <= 0:
                break
            table = reader.read_row_group(index)
            table = table.slice(0, min(left, table.num_rows))
            if writer is None:
                writer = pq.ParquetWriter(dest, table.schema)
            writer.write_table(table)
            left -= table.num_rows
    finally:
        if writer is not None:
            writer.close()


def flow_main(args) -> None:
    keep, scratch, data, work = workspace(args, prefix="bench-flow-")
    env = {name: value for name, value in os.environ.items() if name not in LIMIT_SETTINGS}
    env.update(DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}", WORK_DIR=str(work / "scratch"))
    log_file = Path(args.results) if args.results else None
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    steps: list[dict] = []

    def step(label: str, config: dict) -> dict:
        print(f"{time.strftime('%H:%M:%S')} {label} ...", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            result = child_json(__file__, "--flow-child", config, env)
        except SystemExit as exc:  # the child died (killed, or a crash): the flow stops here
            result = {"outcome": f"process failed: {str(exc)[-600:]}", "ok": False}
        result.update(label=label, process_s=time.perf_counter() - t0, load=(load, os.getloadavg()[0]))
        steps.append(result)
        print(
            f"  {result.get('outcome')} in {result.get('wall_s', 0):.1f} s, peak {result.get('peak_mb', 0):.0f} MB"
            + (f", run child {result['child_peak_mb']:.0f} MB" if result.get("child_peak_mb") else ""),
            file=sys.stderr,
            flush=True,
        )
        return result

    try:
        if data.exists():
            print(f"reusing {data} ({data.stat().st_size / 1e9:.2f} GB)")
        else:
            seconds = write_sites(data, args.rows)
            print(f"wrote {data} ({data.stat().st_size / 1e9:.2f} GB) in {seconds:.0f} s")
        size = data.stat().st_size
        setup = step("setup (migrate, not measured)", {"step": "setup"})
        upload = step("1. upload + profile", {"step": "upload", "data": str(data), "purpose": "training"})
        train = None
        if upload.get("ok"):
            train = step("2. train run", {"step": "train", "dataset_id": upload["dataset_id"]})
        if train and train.get("ok"):
            step(
                "3. monitoring check",
                {"step": "check", "model_id": train["model_id"], "dataset_id": upload["dataset_id"]},
            )
            scored = upload
            if args.score_rows and args.score_rows < upload["rows"]:
                batch = scratch / f"sites-head-{args.score_rows}.parquet"
                head_file(data, batch, args.score_rows)
                scored = step(
                    f"4a. upload + profile of the first {args.score_rows:,} rows (scoring input)",
                    {"step": "upload", "data": str(batch), "purpose": "scoring"},
                )
                batch.unlink()
            if scored.get("ok"):
                step(
                    "4. score run",
                    {"step": "score", "model_id": train["model_id"], "dataset_id": scored["dataset_id"]},
                )
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    finished = time.strftime("%H:%M UTC", time.gmtime())
    print(f"\n{machine_line()}; {started} – {finished}\n")
    print(
        f"`bench/bench_storage.py --kind flow --rows {args.rows}"
        + (f" --score-rows {args.score_rows}" if args.score_rows else "")
        + f"`: {size / 1e9:.2f} GB of Parquet, SQLite, local file store; the children's settings: "
        + json.dumps(setup.get("settings"))
        + "\n"
    )
    print(
        "| step | wall s | peak RSS MB (before the step) | run's child peak RSS MB | load avg before → after | outcome |"
    )
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for s in steps[1:]:
        wall = f"{s['wall_s']:.1f}" if "wall_s" in s else "–"
        peak = f"{s['peak_mb']:.0f} ({s['before_mb']:.0f})" if "peak_mb" in s else "–"
        child = f"{s['child_peak_mb']:.0f}" if s.get("child_peak_mb") else "–"
        print(
            f"| {s['label']} | {wall} | {peak} | {child} | {s['load'][0]:.1f} → {s['load'][1]:.1f} "
            f"| {s.get('outcome')} |"
        )
    print()
    for s in steps[1:]:
        print(
            f"- {s['label']}: {json.dumps({k: v for k, v in s.items() if k not in ('log', 'label')}, default=str)}"
        )
        for line in s.get("sample_lines", []) + s.get("stream_lines", []):
            print(f"    log: {line}")
    if log_file is not None:
        log_file.write_text(json.dumps(steps, default=str, indent=1))
        print(f"\nevery step's result, with the runs' logs: {log_file}")


# --------------------------------------------------------------------------- S3 round trips


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return process, endpoint
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"moto did not start (see {log})") from None
            time.sleep(0.1)


def round_trips(label: str, scratch: Path, sizes: dict[str, int], repeats: dict[str, int]) -> list[dict]:
    from mlworkspace import storage

    results = []
    for name, size in sizes.items():
        source = scratch / f"{name}.bin"
        source.write_bytes(os.urandom(size))
        puts, fetches = [], []
        for i in range(repeats[name]):
            t0 = time.perf_counter()
            entry = storage.put(f"bench/{name}-{i}.bin", source)
            puts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            storage.fetch(f"bench/{name}-{i}.bin", entry["sha256"], scratch / "fetched.bin")
            fetches.append(time.perf_counter() - t0)
        puts.sort(), fetches.sort()
        results.append(
            {
                "store": label,
                "file": name,
                "n": len(puts),
                "put_ms": 1000 * puts[len(puts) // 2],
                "fetch_ms": 1000 * fetches[len(fetches) // 2],
                "put_mbs": size / 1e6 / puts[len(puts) // 2],
                "fetch_mbs": size / 1e6 / fetches[len(fetches) // 2],
            }
        )
    return results


def s3_main(args) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-storage-s3-"))
    os.environ.update(
        {
            "DATA_DIR": str(scratch / "data"),
            "MEDIA_ROOT": str(scratch / "media"),
            "WORK_DIR": str(scratch / "w"),
        }
    )
    import django

    django.setup()
    import boto3
    import django.test.signals  # noqa: F401 - resets the storages when the settings change
    from django.conf import settings
    from django.core.files.storage import storages
    from django.test.utils import override_settings

    sizes = {"1 MB": 1_000_000, "100 MB": 100_000_000}
    repeats = {"1 MB": 20, "100 MB": 3}
    moto, endpoint = start_moto(scratch / "moto.log")
    try:
        results = round_trips("local media folder", scratch, sizes, repeats)
        keys = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys).create_bucket(
            Bucket="bench"
        )
        with override_settings(
            AWS_STORAGE_BUCKET_NAME="bench",
            AWS_S3_ENDPOINT_URL=endpoint,
            AWS_S3_ACCESS_KEY_ID="bench",
            AWS_S3_SECRET_ACCESS_KEY="bench",
            AWS_S3_REGION_NAME="us-east-1",
            STORAGES={**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}},
        ):
            assert type(storages["default"]).__name__ == "S3Storage"
            results += round_trips("S3 (moto on loopback)", scratch, sizes, repeats)
    finally:
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{machine_line()}\n")
    print(
        "`bench/bench_storage.py --kind s3`: medians; put = sha256 + store, fetch = download + sha256 check\n"
    )
    print("| store | file | n | put ms | put MB/s | fetch ms | fetch MB/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['store']} | {r['file']} | {r['n']} | {r['put_ms']:.1f} | {r['put_mbs']:.0f} "
            f"| {r['fetch_ms']:.1f} | {r['fetch_mbs']:.0f} |"
        )


def machine_line() -> str:
    cpus = os.cpu_count()
    with open("/proc/meminfo") as meminfo:
        total = int(meminfo.readline().split()[1]) / 1024 / 1024
    return (
        f"Machine: {platform.machine()}, {cpus} CPUs, {total:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["upload", "flow", "s3"], default="upload")
    parser.add_argument(
        "--rows", type=int, help="rows of the uploaded file (default 10,000,000; --kind flow 50,000,000)"
    )
    parser.add_argument(
        "--score-rows", type=int, help="--kind flow: score a dataset of the file's first N rows instead"
    )
    parser.add_argument("--scratch", help="a folder for the generated file, kept and reused")
    parser.add_argument(
        "--results", help="--kind flow: write every step's result (and run logs) here as JSON"
    )
    parser.add_argument("--upload-child", help=argparse.SUPPRESS)
    parser.add_argument("--flow-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upload_child:
        print(json.dumps(upload_child(json.loads(args.upload_child))))
        return
    if args.flow_child:
        print(json.dumps(flow_child(json.loads(args.flow_child)), default=str))
        return
    if args.rows is None:
        args.rows = 50_000_000 if args.kind == "flow" else 10_000_000
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.score_rows is not None and args.score_rows < 1:
        parser.error("--score-rows must be at least 1")
    if args.kind == "s3":
        s3_main(args)
    elif args.kind == "flow":
        flow_main(args)
    else:
        upload_main(args)


if __name__ == "__main__":
    main()
