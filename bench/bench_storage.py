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


def upload_main(args) -> None:
    keep = args.scratch is not None
    scratch = Path(args.scratch) if keep else Path(tempfile.mkdtemp(prefix="bench-storage-"))
    scratch.mkdir(parents=True, exist_ok=True)
    data = scratch / f"sites-{args.rows}.parquet"
    work = scratch / "workspace"
    shutil.rmtree(work, ignore_errors=True)
    os.environ.update({"DATA_DIR": str(work / "data"), "MEDIA_ROOT": str(work / "media")})
    import django

    django.setup()
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
    parser.add_argument("--kind", choices=["upload", "s3"], default="upload")
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the uploaded file")
    parser.add_argument("--scratch", help="a folder for the generated file, kept and reused")
    parser.add_argument("--upload-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upload_child:
        print(json.dumps(upload_child(json.loads(args.upload_child))))
        return
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.kind == "s3":
        s3_main(args)
    else:
        upload_main(args)


if __name__ == "__main__":
    main()
