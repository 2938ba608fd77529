"""Queue throughput with 1, 2 and 4 worker processes on PostgreSQL, and the lock waits meanwhile.

Issue #16 (Speed): "queue throughput with 1, 2 and 4 worker processes on PostgreSQL (runs/min
for short runs; the database must not be the bottleneck below 50 workers — measure lock
waits)" and "the 100M-row drift check (generate the data into Parquet first)" (``--kind drift``,
below). The 10M/50M-row uploads and the S3 round trips are other benchmarks.

The script drops and re-creates a PostgreSQL database (default
``postgres://postgres@127.0.0.1:5432/mlworkspace_bench_scale``), prepares it as a fresh install
does (``make migrate``: ``migrate``, ``loaddata baseline_recipes``, ``setup_workspace``), then for
each N in ``--workers``:

1. enqueues ``--runs`` runs through the real service, ``runs.services.run_start``, with no
   worker running;
2. starts N real ``manage.py worker --no-housekeeping --interval 0.1`` processes
   (``RUN_THREADS=1``, ``DEBUG=0``, their data and media in a temporary directory; no
   housekeeping, so only the queue and the runs are measured; each runs the command through
   ``call_command`` in this script, ``--timed-worker``, which times its queue statements: see
   below) while the bench holds the runs'
   task rows locked, waits until every worker has beaten once (it is polling the queue), and
   then commits: all N start together, and the wall time (from that commit until every run is
   terminal and every task row finished) leaves out the workers' start-up, which is printed
   on its own;
3. stops the workers with SIGTERM;
4. checks that each run was executed exactly once (one task row, finished by one worker, with
   the expected result; the run's status; the executor's "claimed by worker" log line once).

Meanwhile a thread samples ``pg_stat_activity`` every 0.2 s (from the maintenance database, so
the sampler's own queries are not the bench database's) for backends of the bench database
waiting on a heavyweight lock (``wait_event_type = 'Lock'``: a row lock, a transaction id, a
relation), and ``pg_stat_database`` is read before and after (commits, deadlocks, blocks read
from disk; the bench's own transactions are subtracted; the idle workers' queue polls, ten a
second each, are in). The 1-minute load average is printed at the start and the end of each
measurement. The sampler also counts the samples in which a backend of the workers is executing
a statement (state 'active') and the wait events of those backends (``none``: on the CPU).

Where the CPU went during each measurement (from the gate's commit to the end), from
``/proc/PID/stat`` (utime + stime): the PostgreSQL server's processes (the postmaster's
children, and the children that exited meanwhile through the postmaster's reaped time; on a
server on another host these figures are "—"), of which the workers' backends (their pids from
``pg_stat_activity``); the workers (with their runs' child processes); this bench process; and
the whole machine (``/proc/stat``), so "the rest" is other work on the machine. Shares are of
the wall time × the cores. pg_stat_statements needs ``shared_preload_libraries`` (a server
restart), so the queue's statements are timed on the client side instead: each worker's
main-thread connection has an ``execute_wrapper`` and a wrapped commit (``StatementTimer``):
the claim transaction (SELECT … FOR UPDATE SKIP LOCKED, UPDATE, COMMIT) whole, the empty
polls, the finish UPDATE (autocommit, so with its commit), and the rest.

A worker holds two connections (its main thread's and, from its second heartbeat on, its
heartbeat thread's; a train run adds one while its inputs are prepared): the script checks
that the round fits ``max_connections`` first. ``--worker-beat-seconds`` longer than a round
(e.g. 3600) keeps the heartbeat thread from connecting, one connection a worker.

``--kind train`` (the default): train runs of the pricing baseline on a tiny synthetic batch:
the smallest the baseline accepts is 53 weekly periods (its ``min_history`` is 52 weeks), and
``--rows`` picks the smallest world with at least that many rows (400 → 4 products × 2 stores
× 53 weeks = 424 rows). The pipeline on 424 rows takes ~0.5 s (LightGBM's import included);
before it, the executor's spawned child process imports the pipeline's numpy, pandas and SciPy
(~2 s of CPU on this project's 2-core VM), which every workspace run pays: a run is a few
seconds of CPU, most of it not the fit.

``--kind claim``: the queue's own overhead, with no child process. An external run never
reaches a worker (``run_start`` enqueues only workspace runs), so this is the cheapest path a
workspace run's task takes: the runs are started with ``run_start`` and cancelled with
``runs.services.run_cancel`` before the workers start; each task is still delivered, claimed by
one worker (``SELECT … FOR UPDATE SKIP LOCKED`` on the task table), ``runs.executor.execute_run``
tries the run's conditional claim (queued → running), finds it cancelled and returns "not
claimed", and the task row is marked successful. Its figures are task rows per minute.

    .venv/bin/python bench/bench_scale.py                                  # workers 1 2 4, 60 runs each
    .venv/bin/python bench/bench_scale.py --workers 1 2 --runs 10          # a quick check
    .venv/bin/python bench/bench_scale.py --kind claim --runs 600
    .venv/bin/python bench/bench_scale.py --kind claim --workers 8 16 32 50 --runs 2000 --worker-beat-seconds 3600
    .venv/bin/python bench/bench_scale.py --database-url postgres://user@host:5432/other_bench --keep

The bench database is dropped at the end unless ``--keep``. Results are printed as a Markdown
table for bench/README.md.

``--kind drift``: the monitoring check's drift computation over a Parquet file larger than
memory (no database). ``--drift-rows`` rows (default 100M) × 25 float32 features are written
into ``<scratch>/drift-<rows>.parquet`` one row group (1M rows) at a time, so the generator holds
one row group; float32 because it halves the file (100M rows: 10 GB instead of 20 GB) and the
disk reads, and the check converts each chunk column to float64 anyway, so its work per value
is the same. The current rows have drift in a few features (as in bench/bench_drift.py). A
reference of 1M rows from the same generators without drift is profiled with
``monitoring.drift.build_profile``. Then, for each method (PSI, KS) and thread count, a fresh
child process times ``monitoring.services.checks.scan_table`` (what the check of a dataset over
CHECK_STREAM_ROWS rows reads with: chunks of CHECK_CHUNK_ROWS rows, only the feature columns)
feeding a ``monitoring.drift.DriftStream``, plus its report, and reports its wall and CPU time
and its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``; the peak before the scan, i.e.
Python, Django, pandas and the profile, is printed next to it). The check's checked local copy
of the file (a copy and a sha256 of it) is not in the figures: the sha256 of the file is timed
on its own. The data file is kept for the next run with ``--scratch DIR`` (reused when it is
there), else removed at the end.

    .venv/bin/python bench/bench_scale.py --kind drift --drift-rows 10000000   # a quick check
    .venv/bin/python bench/bench_scale.py --kind drift --scratch /var/tmp/bench-drift
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlworkspace.settings")

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/mlworkspace_bench_scale"
RECIPE = "recipe_pricing_base"
# The pricing baseline's requirements.min_history is "52 weeks", checked on the span from the
# first to the last week (runs.data): 53 weekly periods are the shortest batch that passes.
HISTORY_WEEKS = 53
SAMPLE_SECONDS = 0.2
POLL_SECONDS = 0.25
STOP_TIMEOUT = 30.0


# --------------------------------------------------------------------------- the database


def maintenance_url(url: str) -> tuple[str, str]:
    """(the server's `postgres` database URL, the bench database's name)."""
    base, name = url.rsplit("/", 1)
    return f"{base}/postgres", name.split("?", 1)[0]


def recreate_database(url: str) -> None:
    import psycopg

    admin, name = maintenance_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg

    admin, name = maintenance_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare_workspace():
    """What `make migrate` does for a fresh install; returns the user who starts the runs."""
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("loaddata", "baseline_recipes", verbosity=0)
    call_command("setup_workspace", stdout=StringIO())
    user, _ = get_user_model().objects.get_or_create(username="bench-scale")
    return user


def database_stats(conn, name: str) -> dict:
    conn.execute("SELECT pg_stat_clear_snapshot()")  # a fresh read, not the transaction's cached one
    row = conn.execute(
        "SELECT xact_commit, xact_rollback, deadlocks, blks_read, blks_hit FROM pg_stat_database"
        " WHERE datname = %s",
        [name],
    ).fetchone()
    return dict(zip(("xact_commit", "xact_rollback", "deadlocks", "blks_read", "blks_hit"), row, strict=True))


class LockSampler(threading.Thread):
    """Every SAMPLE_SECONDS, the bench database's backends from pg_stat_activity (the bench's own
    connections, `exclude`, left out): how many wait on a heavyweight lock (wait_event_type
    'Lock'), what they wait for and on which statement; whether any is executing a statement
    (state 'active') and, for each active one, its wait event (none: on the CPU, or in a wait
    PostgreSQL does not name); and how many connections the database has."""

    def __init__(self, admin_url: str, name: str, exclude: tuple[int, ...] = ()):
        super().__init__(name="lock-sampler", daemon=True)
        self.admin_url, self.name, self.exclude = admin_url, name, list(exclude)
        self.samples = self.lock_samples = self.max_waiting = self.max_active = 0
        self.active_samples = self.max_backends = 0
        self.backend_pid: int | None = None  # the sampler's own, on the maintenance database
        self.waits: collections.Counter = collections.Counter()
        self.active_events: collections.Counter = collections.Counter()
        self.active_queries: collections.Counter = collections.Counter()
        self._stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            self.backend_pid = conn.info.backend_pid
            next_at = time.monotonic()
            while not self._stop.is_set():
                # A waiting backend's first blocker: its state and statement (the lock holder's
                # last statement when it is idle in its transaction).
                rows = conn.execute(
                    "SELECT a.state, a.wait_event_type, a.wait_event,"
                    " left(regexp_replace(a.query, '\\s+', ' ', 'g'), 90),"
                    " CASE WHEN a.wait_event_type = 'Lock' THEN (SELECT b.state || ': '"
                    " || left(regexp_replace(b.query, '\\s+', ' ', 'g'), 70) FROM pg_stat_activity b"
                    " WHERE b.pid = (pg_blocking_pids(a.pid))[1]) END"
                    " FROM pg_stat_activity a WHERE a.datname = %s AND a.pid <> pg_backend_pid()"
                    " AND a.pid <> ALL(%s::int[])",
                    [self.name, self.exclude],
                ).fetchall()
                waiting = [row for row in rows if row[1] == "Lock"]
                active = [row for row in rows if row[0] == "active"]
                self.samples += 1
                self.lock_samples += bool(waiting)
                self.active_samples += bool(active)
                self.max_waiting = max(self.max_waiting, len(waiting))
                self.max_active = max(self.max_active, len(active))
                self.max_backends = max(self.max_backends, len(rows))
                for _, _, event, query, blocker in waiting:
                    self.waits[(event, query, blocker)] += 1
                for _, event_type, event, query, _ in active:
                    self.active_events[f"{event_type}:{event}" if event_type else "none"] += 1
                    self.active_queries[query] += 1
                next_at += SAMPLE_SECONDS
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self.join()


# --------------------------------------------------------------------------- CPU time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_times(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, own CPU seconds, CPU seconds of its exited and reaped children) from
    /proc/PID/stat (utime + stime, cutime + cstime); None when the process is gone or not on
    this machine (a database server on another host)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "(comm)": field 3 (state) is fields[0]
    utime, stime, cutime, cstime = (int(value) / CLOCK_TICKS for value in fields[11:15])
    return int(fields[1]), utime + stime, cutime + cstime


def server_snapshot(postmaster: int | None) -> dict[int, float]:
    """The PostgreSQL server's CPU seconds so far: each child of the postmaster (backends of
    every database, checkpointer, WAL writer, ...) by pid, and under the postmaster's own pid
    its time plus that of its children which have exited. Empty when the server is not here."""
    main = proc_times(postmaster) if postmaster else None
    if main is None:
        return {}
    snapshot = {postmaster: main[1] + main[2]}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (times := proc_times(int(entry.name))) and times[0] == postmaster:
            snapshot[int(entry.name)] = times[1]
    return snapshot


def server_cpu(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the server used between two snapshots: what its live processes added, plus
    the whole lifetime of those that exited meanwhile (now in the postmaster's reaped children's
    time) less what they had used before the first snapshot."""
    added = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
    return added - sum(seconds for pid, seconds in before.items() if pid not in after)


def workers_cpu(workers: list[subprocess.Popen]) -> dict[int, float]:
    """Each worker's CPU seconds so far, its run's child processes (reaped) included."""
    return {w.pid: times[1] + times[2] for w in workers if (times := proc_times(w.pid))}


def machine_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine, every core, since boot (/proc/stat): busy is
    user, nice, system, irq, softirq and steal; all adds idle and iowait."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy / CLOCK_TICKS, (busy + idle + iowait) / CLOCK_TICKS


def cpu_figures(start: dict, end: dict, worker_backends: set[int], bench_backends: set[int]) -> dict:
    """The round's CPU seconds from two `cpu_snapshot`s: the server (all of it, the workers'
    backends, the bench's own backends), the workers, this bench process, and the machine."""
    server = server_cpu(start["server"], end["server"]) if start["server"] and end["server"] else None

    def backends(pids: set[int]) -> float | None:
        if server is None:
            return None
        return sum(end["server"][pid] - start["server"].get(pid, 0.0) for pid in pids if pid in end["server"])

    return {
        "server": server,
        "backends": backends(worker_backends),
        "bench_backends": backends(bench_backends),
        "workers": sum(end["workers"].get(pid, 0.0) - s for pid, s in start["workers"].items()),
        "bench": end["bench"] - start["bench"],
        "machine_busy": end["machine"][0] - start["machine"][0],
        "machine_all": end["machine"][1] - start["machine"][1],
    }


def cpu_snapshot(postmaster: int | None, workers: list[subprocess.Popen]) -> dict:
    return {
        "server": server_snapshot(postmaster),
        "workers": workers_cpu(workers),
        "bench": time.process_time(),  # this process: the sampler and the poller
        "machine": machine_busy(),
    }


# --------------------------------------------------------------------------- statement timings

QUEUE_STATEMENTS = ("claim transaction", "empty poll", "finish")


def statement_kind(sql: str) -> str:
    """Which of the queue's statements `sql` is (django-tasks-db's db_worker: the claim's
    SELECT … FOR UPDATE SKIP LOCKED and UPDATE to RUNNING, the UPDATE to SUCCESSFUL/FAILED)."""
    if "dbtaskresult" in sql:
        if "SKIP LOCKED" in sql:
            return "claim select"
        if sql.startswith("UPDATE") and '"started_at"' in sql:
            return "claim update"
        if sql.startswith("UPDATE") and '"finished_at"' in sql:
            return "finish"
    return "other"


class StatementTimer:
    """A connection.execute_wrapper (and a wrapper of the connection's commit) that records,
    from the client's side, how long each statement of the worker's main thread took, as
    [wall-clock start, kind, seconds] rows. The claim is a transaction of its own (db_worker's
    `exclusive_transaction`: SELECT … FOR UPDATE SKIP LOCKED, then UPDATE if a row came back,
    then COMMIT): it is recorded whole, from the SELECT to the end of the COMMIT, as "claim
    transaction" when it took a task and "empty poll" when it found none; the finish UPDATE is
    an autocommit statement, its time includes the commit."""

    def __init__(self):
        self.rows: list[list] = []
        self._claim: tuple[float, float, bool] | None = None  # (wall, perf_counter, got a row)

    def __call__(self, execute, sql, params, many, context):
        at, t0 = time.time(), time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            kind = statement_kind(sql)
            self.rows.append([at, kind, time.perf_counter() - t0])
            if kind == "claim select":
                self._claim = (at, t0, bool(context["cursor"].rowcount))

    def wrap_commit(self, commit):
        def timed_commit():
            at, t0 = time.time(), time.perf_counter()
            try:
                return commit()
            finally:
                end = time.perf_counter()
                self.rows.append([at, "commit", end - t0])
                if self._claim is not None:
                    claim_at, claim_t0, got = self._claim
                    self.rows.append([claim_at, "claim transaction" if got else "empty poll", end - claim_t0])
                    self._claim = None

        return timed_commit


def timed_worker(out: str) -> None:
    """`manage.py worker --no-housekeeping --interval 0.1` run in this process, the statements of
    its main thread (the queue's) timed by a StatementTimer; the rows go to `out` as JSON when
    the worker exits (SIGTERM). Its heartbeat thread has its own connection, not timed."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    timer = StatementTimer()
    conn = connections["default"]  # this thread's: the one db_worker claims and finishes on
    conn._commit = timer.wrap_commit(conn._commit)  # Django's atomic() commits through _commit
    try:
        with conn.execute_wrapper(timer):
            call_command("worker", "--no-housekeeping", "--interval", "0.1")
    finally:
        Path(out).write_text(json.dumps(timer.rows))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def statement_figures(paths: list[Path], start: float, end: float) -> dict:
    """The timed workers' rows that overlap [start, end] (wall clock: a claim that began just
    before the gate's commit may take a task after it), by kind: count, total, mean, p95 and
    max seconds."""
    by_kind = collections.defaultdict(list)
    for path in paths:
        if path.exists():
            for at, kind, seconds in json.loads(path.read_text()):
                if at <= end and at + seconds >= start:
                    by_kind[kind].append(seconds)
    return {
        kind: {
            "count": len(values),
            "total": sum(values),
            "mean": sum(values) / len(values),
            "p95": percentile(values, 0.95),
            "max": max(values),
        }
        for kind, values in by_kind.items()
    }


# --------------------------------------------------------------------------- the runs


def batch_request(rows: int) -> dict:
    """The smallest pricing synthetic request of HISTORY_WEEKS weeks with at least `rows` rows
    (the world grows with the request's rows: products x stores series)."""
    from runs.families import get_family, worlds

    family = get_family("pricing")
    for request_rows in range(50, 1_000_000):  # runs.services.synthetic_resolve's minimum is 50
        request = {"rows": request_rows, "periods": HISTORY_WEEKS, "seed": 42}
        if worlds.resolve(family, request)["rows"] >= rows:
            return request
    raise SystemExit(f"--rows {rows}: no pricing batch that large")


def enqueue(kind: str, runs: int, user, request: dict) -> list[str]:
    """`runs` runs through runs.services.run_start (enqueued on commit); `claim` cancels each
    one at once, so its task reaches a worker but the run is never claimed."""
    from recipes.models import Recipe
    from runs.services import run_cancel, run_start

    recipe = Recipe.objects.get(pk=RECIPE)
    ids = []
    for _ in range(runs):
        run = run_start(user=user, recipe=recipe, run_type="train", params={"synthetic": dict(request)})
        if kind == "claim":
            run_cancel(run=run, user=user)
        ids.append(run.id)
    return ids


def timings_path(log_dir: Path, n: int, i: int) -> Path:
    return log_dir / f"timings-{n}-{i}.json"


def start_workers(n: int, env: dict, log_dir: Path) -> list[subprocess.Popen]:
    """N worker processes: the worker command (`timed_worker`), each with its own log."""
    workers = []
    for i in range(n):
        command = [sys.executable, __file__, "--timed-worker", str(timings_path(log_dir, n, i))]
        log = (log_dir / f"worker-{n}-{i}.log").open("w")
        # A session of its own: a Ctrl-C on the terminal reaches the bench only, which stops
        # each worker's process group (the worker and its run's child) in `finally`.
        workers.append(
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        log.close()
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    """SIGTERM (an idle worker exits at once, a busy one after its run), then SIGKILL to the
    process group of any still alive after STOP_TIMEOUT."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def wait_until_done(conn, ids: list[str], timeout: float, workers) -> tuple[bool, int]:
    """Poll until every run is terminal and every task row of theirs finished; (done, polls)."""
    from django_tasks_db.models import DBTaskResult

    from runs.models import Run

    sql = (
        f"SELECT (SELECT count(*) FROM {Run._meta.db_table} WHERE id = ANY(%(ids)s)"
        "        AND status IN ('succeeded', 'failed', 'cancelled')),"
        f"       (SELECT count(*) FROM {DBTaskResult._meta.db_table} WHERE args_kwargs->'args'->>0 = ANY(%(ids)s)"
        "        AND status IN ('SUCCESSFUL', 'FAILED'))"
    )
    deadline, polls = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        terminal, finished = conn.execute(sql, {"ids": ids}).fetchone()
        polls += 1
        if terminal == len(ids) and finished >= len(ids):
            return True, polls
        if all(worker.poll() is not None for worker in workers):
            return False, polls  # every worker exited: nothing will finish
        time.sleep(POLL_SECONDS)
    return False, polls


def check_once(kind: str, ids: list[str]) -> dict:
    """Per run: one task row, finished successfully by one worker with the expected result; the
    run's expected status; the executor's claim log line once (none for `claim`)."""
    from django.db.models import Count, Max, Min, Q
    from django_tasks_db.models import DBTaskResult

    from runs.models import Run

    expected_status, expected_result, expected_claims = {
        "train": ("succeeded", "succeeded", 1),
        "claim": ("cancelled", "not claimed (no longer queued)", 0),
    }[kind]
    runs = {
        run_id: (status, claims)
        for run_id, status, claims in Run.objects.filter(pk__in=ids)
        .annotate(claims=Count("logs", filter=Q(logs__message__contains=" claimed by worker ")))
        .values_list("id", "status", "claims")
    }
    tasks = DBTaskResult.objects.filter(args_kwargs__args__0__in=ids)
    rows = collections.defaultdict(list)
    per_worker: collections.Counter = collections.Counter()
    for run_id, status, result, worker_ids in tasks.values_list(
        "args_kwargs__args__0", "status", "return_value", "worker_ids"
    ):
        rows[run_id].append((status, result, worker_ids))
        if worker_ids:
            per_worker[tuple(worker_ids)] += 1
    once = 0
    statuses: collections.Counter = collections.Counter()
    for run_id in ids:
        status, claims = runs[run_id]
        statuses[status] += 1
        task_rows = rows.get(run_id, [])
        if (
            len(task_rows) == 1
            and task_rows[0][0] == "SUCCESSFUL"
            and task_rows[0][1] == expected_result
            and len(task_rows[0][2]) == 1
            and status == expected_status
            and claims == expected_claims
        ):
            once += 1
    span = tasks.aggregate(first=Min("started_at"), last=Max("finished_at"))
    task_span = (span["last"] - span["first"]).total_seconds() if span["first"] and span["last"] else None
    return {
        "once": once,
        "statuses": dict(statuses),
        "per_worker": sorted(per_worker.values(), reverse=True),
        "task_span_s": task_span,
    }


def print_logs(log_dir: Path, n: int) -> None:
    for log in sorted(log_dir.glob(f"worker-{n}-*.log")):
        lines = log.read_text().splitlines()[-15:]
        print(f"--- {log.name} (last lines)\n" + "\n".join(lines), file=sys.stderr)


def wait_until_ready(conn, workers: list[subprocess.Popen], timeout: float) -> None:
    """Until every worker has written its heartbeat row (mlworkspace.health: the worker beats
    once just before it starts polling the queue)."""
    from mlworkspace.models import WorkerHeartbeat

    names = [f"{socket.gethostname()}:{worker.pid}" for worker in workers]
    sql = f"SELECT count(*) FROM {WorkerHeartbeat._meta.db_table} WHERE worker_id = ANY(%s)"
    deadline = time.monotonic() + timeout
    while conn.execute(sql, [names]).fetchone()[0] < len(workers):
        if any(worker.poll() is not None for worker in workers) or time.monotonic() > deadline:
            raise RuntimeError("a worker exited or did not start in time (its log is above)")
        time.sleep(POLL_SECONDS)


def connections_check(conn, n: int, per_worker: int) -> dict:
    """max_connections, the server's connections now (every database), and the connections the
    round will add: `per_worker` for each worker plus the bench's three on the server (the
    poller, the gate, the sampler); SystemExit naming the figures when they do not fit."""
    limit = int(conn.execute("SHOW max_connections").fetchone()[0])
    in_use = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    ).fetchone()[0]
    needed = n * per_worker + 3
    if in_use + needed > limit:
        raise SystemExit(
            f"{n} workers need {needed} connections ({per_worker} each, and the bench's), but "
            f"{in_use} of max_connections {limit} are in use: fewer workers, or --worker-beat-seconds "
            "longer than a round (one connection a worker)"
        )
    return {"max_connections": limit, "in_use": in_use, "needed": needed}


def measure(kind: str, n: int, args, user, request: dict, env: dict, log_dir: Path) -> dict:
    import psycopg
    from django.db import connections
    from django_tasks_db.models import DBTaskResult

    admin, name = maintenance_url(args.database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        # A worker's connections: its main thread's, its heartbeat thread's (unless the first
        # beat after the one at start comes after the round) and, during a train run's
        # preparation, its run's beat thread's.
        per_worker = (1 if args.worker_beat_seconds else 2) + (kind == "train")
        conns = connections_check(conn, n, per_worker)
    t0 = time.perf_counter()
    ids = enqueue(kind, args.runs, user, request)
    enqueue_s = time.perf_counter() - t0
    # Closed so that this backend's statistics reach pg_stat_database (a backend flushes them on
    # exit) before the "before" figures are read.
    connections.close_all()
    done, polls, workers = False, 0, []
    with (
        psycopg.connect(admin, autocommit=True) as stats_conn,
        psycopg.connect(args.database_url, autocommit=True) as poll,
        psycopg.connect(args.database_url) as gate,
    ):
        sampler = LockSampler(admin, name, exclude=(poll.info.backend_pid, gate.info.backend_pid))
        # The server's main process: the parent of a backend (None if the server is elsewhere).
        postmaster = (proc_times(stats_conn.info.backend_pid) or (None,))[0]
        backends_sql = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> ALL(%s::int[])"
        own = [poll.info.backend_pid, gate.info.backend_pid]
        # The gate: this transaction holds the runs' task rows locked while the workers start, so
        # they all begin together (a worker claims with FOR UPDATE SKIP LOCKED: it skips locked
        # rows and polls again, it never waits on them); the commit opens the gate. Without it the
        # first worker up would take runs while the others are still importing Django.
        gate.execute(
            f"SELECT id FROM {DBTaskResult._meta.db_table} WHERE args_kwargs->'args'->>0 = ANY(%s) FOR UPDATE",
            [ids],
        )
        t0 = time.perf_counter()
        workers = start_workers(n, env, log_dir)
        try:
            try:
                wait_until_ready(poll, workers, timeout=300)
            except RuntimeError:
                print_logs(log_dir, n)
                raise
            startup_s = time.perf_counter() - t0
            time.sleep(1)  # the backends flush their statistics at most once a second
            before = database_stats(stats_conn, name)
            load_start = os.getloadavg()[0]
            pids = {row[0] for row in stats_conn.execute(backends_sql, [name, own]).fetchall()}
            sampler.start()
            while sampler.backend_pid is None and sampler.is_alive():
                time.sleep(0.01)  # its backend is the bench's, not the workers'
            own += [stats_conn.info.backend_pid, sampler.backend_pid]
            cpu_start = cpu_snapshot(postmaster, workers)
            t0, wall_start = time.perf_counter(), time.time()
            gate.commit()
            done, polls = wait_until_done(poll, ids, args.timeout, workers)
            wall, wall_end = time.perf_counter() - t0, time.time()
            cpu_end = cpu_snapshot(postmaster, workers)
            pids |= {row[0] for row in stats_conn.execute(backends_sql, [name, own]).fetchall()}
            load_end = os.getloadavg()[0]
        finally:
            if sampler.is_alive():
                sampler.stop()
            stop_workers(workers)
    time.sleep(1)  # the workers' and the poller's backends exit and flush their statistics
    with psycopg.connect(admin, autocommit=True) as stats_conn:
        after = database_stats(stats_conn, name)
    if not done:
        print_logs(log_dir, n)
    checked = check_once(kind, ids)
    delta = {key: after[key] - before[key] for key in before}
    # The poller's statements and the gate's commit are the bench's own transactions (one each);
    # the sampler and the statistics reads are on the maintenance database.
    delta["xact_commit"] -= polls + 1
    return {
        "workers": n,
        "runs": len(ids),
        "done": done,
        "enqueue_s": enqueue_s,
        "startup_s": startup_s,
        "wall_s": wall,
        "load_start": load_start,
        "load_end": load_end,
        "sampler": sampler,
        "db": delta,
        "connections": conns,
        "cpu": cpu_figures(cpu_start, cpu_end, pids, set(own)),
        "statements": statement_figures(
            [timings_path(log_dir, n, i) for i in range(n)], wall_start, wall_end
        ),
        **checked,
    }


# --------------------------------------------------------------------------- the drift check

DRIFT_FEATURES = [f"f_{i:02d}" for i in range(25)]
DRIFT_ROW_GROUP = 1_000_000
DRIFT_REFERENCE_ROWS = 1_000_000
DRIFT_THRESHOLDS = {"PSI": 0.2, "KS": 0.1}
# Drift in the current rows: k reference standard deviations added, or ("scale", k).
DRIFT_SHIFT = {"f_00": 0.5, "f_05": 0.25, "f_10": 0.1, "f_15": ("scale", 1.3)}


def drift_columns(rng, n: int, *, shifted: bool) -> dict:
    """25 float32 columns of several shapes (normal, log-normal, uniform, Poisson counts with
    ties, exponential; 1 % nulls in f_03); with `shifted`, DRIFT_SHIFT's normal features are
    moved by k standard deviations or scaled."""
    import numpy as np

    cols = {}
    for i, name in enumerate(DRIFT_FEATURES):
        shape = i % 5
        if shape == 0:
            shift = DRIFT_SHIFT.get(name) if shifted else None
            loc, sd = 100 + i, 10 + i
            values = rng.normal(loc + (shift if isinstance(shift, float) else 0) * sd, sd, n)
            if isinstance(shift, tuple):
                values = loc + (values - loc) * shift[1]
        elif shape == 1:
            values = rng.lognormal(1.0, 0.6, n)
        elif shape == 2:
            values = rng.uniform(-5, 5 + i, n)
        elif shape == 3:
            values = rng.poisson(4 + i % 7, n).astype(np.float64)
        else:
            values = rng.exponential(2.0 + i, n)
        cols[name] = values.astype(np.float32)
    cols["f_03"][rng.random(n) < 0.01] = np.nan
    return cols


def write_drift_data(path: Path, rows: int) -> float:
    """`rows` current rows into `path`, one row group of DRIFT_ROW_GROUP rows at a time; seconds."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    schema = pa.schema([(name, pa.float32()) for name in DRIFT_FEATURES])
    partial = path.with_suffix(".part")
    rng = np.random.default_rng(2)
    with pq.ParquetWriter(partial, schema) as writer:
        for start in range(0, rows, DRIFT_ROW_GROUP):
            n = min(DRIFT_ROW_GROUP, rows - start)
            writer.write_table(pa.table(drift_columns(rng, n, shifted=True), schema=schema))
            print(f"\r  written {start + n:,} of {rows:,} rows", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    partial.rename(path)
    return time.perf_counter() - t0


def drift_profile(path: Path) -> float:
    """The stored profile of a 1M-row reference (build_profile, as at training); seconds."""
    import numpy as np
    import pandas as pd

    from monitoring import drift as drift_lib

    reference = pd.DataFrame(drift_columns(np.random.default_rng(1), DRIFT_REFERENCE_ROWS, shifted=False))
    t0 = time.perf_counter()
    profile = drift_lib.build_profile(reference, DRIFT_FEATURES, seed=0)
    seconds = time.perf_counter() - t0
    path.write_text(json.dumps(profile))
    return seconds


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, the high-water mark of its memory map. Not
    getrusage's ru_maxrss, which on Linux keeps the parent's peak across fork + exec (a child
    of a parent that held the 1M-row reference would report that)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drift_child(config: dict) -> dict:
    """In a fresh process: the check's chunked read of the file into a DriftStream, and its report."""
    import django

    django.setup()
    from django.conf import settings

    from monitoring import drift as drift_lib
    from monitoring.services import checks

    profile = json.loads(Path(config["profile"]).read_text())
    stream = drift_lib.DriftStream(
        profile,
        method=config["method"],
        threshold=DRIFT_THRESHOLDS[config["method"]],
        features=DRIFT_FEATURES,
        workers=config["threads"],
    )
    import pyarrow.parquet  # noqa: F401 - loaded once per worker, not per check: not timed

    chunk_rows = config["chunk_rows"] or settings.CHECK_CHUNK_ROWS
    before_mb = peak_rss_mb()
    cpu0, t0 = time.process_time(), time.perf_counter()
    rows = checks.scan_table(Path(config["data"]), "parquet", feed=[stream], chunk_rows=chunk_rows)
    report = stream.report()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "rows": rows,
        "chunk_rows": chunk_rows,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_mb": peak_rss_mb(),
        "before_mb": before_mb,
        "drifted": report["drifted_features"],
        "n_cur": report["features"]["f_00"]["n_cur"],
        "errors": {f: e["error"] for f, e in report["features"].items() if e.get("error")},
    }


def child_json(script: str, flag: str, config: dict, env: dict) -> dict:
    """Run `script flag <config JSON>` in a fresh process (its own peak memory) and return the
    JSON object its last output line prints; SystemExit with its error output if it failed."""
    out = subprocess.run(
        [sys.executable, script, flag, json.dumps(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"the child {flag} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def drift_measure(config: dict, env: dict) -> dict:
    return child_json(__file__, "--drift-child", config, env)


def drift_main(args) -> None:
    keep = args.scratch is not None
    scratch = Path(args.scratch) if keep else Path(tempfile.mkdtemp(prefix="bench-scale-drift-"))
    scratch.mkdir(parents=True, exist_ok=True)
    data = scratch / f"drift-{args.drift_rows}.parquet"
    profile = scratch / "drift-profile.json"
    # The settings the child (and mlworkspace.storage here) load write nothing in ./data.
    os.environ.update({"DATA_DIR": str(scratch / "django-data"), "MEDIA_ROOT": str(scratch / "media")})
    env = {**os.environ, "RUN_THREADS": "1"}
    import django

    django.setup()
    from mlworkspace.storage import sha256_of

    results = []
    try:
        if data.exists():
            print(f"reusing {data} ({data.stat().st_size / 1e9:.2f} GB)")
        else:
            seconds = write_drift_data(data, args.drift_rows)
            print(f"wrote {data} ({data.stat().st_size / 1e9:.2f} GB) in {seconds:.0f} s")
        size_gb = data.stat().st_size / 1e9
        seconds = drift_profile(profile)
        print(
            f"profile of {DRIFT_REFERENCE_ROWS:,} reference rows in {seconds:.1f} s ({profile.stat().st_size:,} bytes)"
        )
        header = machine_line(None)
        t0 = time.perf_counter()
        sha256_of(data)
        sha_s = time.perf_counter() - t0
        print(f"sha256 of the file: {sha_s:.1f} s", flush=True)
        for method in args.drift_methods:
            for threads in args.drift_threads:
                config = {
                    "data": str(data),
                    "profile": str(profile),
                    "method": method,
                    "threads": threads,
                    "chunk_rows": args.chunk_rows,
                }
                result = {"method": method, "threads": threads, **drift_measure(config, env)}
                results.append(result)
                print(
                    f"{method}, {threads} thread(s): {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU, "
                    f"peak RSS {result['peak_mb']:.0f} MB; drifted {', '.join(result['drifted'])}",
                    flush=True,
                )
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{header}\n")
    print(
        f"`bench/bench_scale.py --kind drift --drift-rows {args.drift_rows}`: {args.drift_rows:,} rows × "
        f"{len(DRIFT_FEATURES)} float32 features, {size_gb:.2f} GB of Parquet; sha256 of the file "
        f"{sha_s:.1f} s (not in the figures below)\n"
    )
    print(drift_table(results))


def drift_table(results: list[dict]) -> str:
    lines = [
        "| method | threads | rows | chunk rows | wall s | CPU s | rows/s | peak RSS MB (before the scan) | drifted |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['threads']} | {r['rows']:,} | {r['chunk_rows']:,} | {r['wall_s']:.1f} "
            f"| {r['cpu_s']:.1f} | {r['rows'] / r['wall_s'] / 1e6:.2f}M | {r['peak_mb']:.0f} ({r['before_mb']:.0f}) "
            f"| {', '.join(r['drifted']) or '—'} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the report


def machine_line(database_url: str | None) -> str:
    import psycopg

    model = platform.processor() or "?"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        pass
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    database = ""
    if database_url:  # the drift part uses no database
        admin, _ = maintenance_url(database_url)
        with psycopg.connect(admin, autocommit=True) as conn:
            database = f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]} · "
    return (
        f"{platform.node()} · {model} · {os.cpu_count()} cores · {ram_gb:.1f} GB RAM · "
        f"Python {platform.python_version()} · {database}{datetime.now():%Y-%m-%d %H:%M} · "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def load_now() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def table(kind: str, results: list[dict]) -> str:
    unit = "runs" if kind == "train" else "task rows"
    lines = [
        f"| workers | runs | wall s | {unit}/min | per-worker {unit}/min | lock-wait samples (max concurrent) "
        "| deadlocks | all once? | commits/run | blocks read | load 1m start → end |",
        "| ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for r in results:
        s = r["sampler"]
        rate = f"{60 * r['runs'] / r['wall_s']:.1f}" if r["done"] else "—"
        per_worker = f"{60 * r['runs'] / r['wall_s'] / r['workers']:.1f}" if r["done"] else "—"
        once = "yes" if r["once"] == r["runs"] else f"**no: {r['once']} of {r['runs']}**"
        if not r["done"]:
            once += f" (timed out: {r['statuses']})"
        lines.append(
            f"| {r['workers']} | {r['runs']} | {r['wall_s']:.1f} | {rate} | {per_worker} "
            f"| {s.lock_samples} of {s.samples} ({s.max_waiting}) | {r['db']['deadlocks']} | {once} "
            f"| {r['db']['xact_commit'] / r['runs']:.1f} | {r['db']['blks_read']} "
            f"| {r['load_start']:.2f} → {r['load_end']:.2f} |"
        )
    return "\n".join(lines)


def details(results: list[dict]) -> str:
    lines = []
    for r in results:
        s = r["sampler"]
        span = f"{r['task_span_s']:.1f} s" if r["task_span_s"] is not None else "—"
        lines.append(
            f"- {r['workers']} worker(s): enqueued in {r['enqueue_s']:.1f} s, workers up in {r['startup_s']:.1f} s; "
            f"first task start → last task end {span}; runs per worker {', '.join(map(str, r['per_worker']))}; "
            f"run statuses {r['statuses']}; at most {s.max_active} active backends in a sample; "
            f"commits {r['db']['xact_commit']}, rollbacks {r['db']['xact_rollback']}"
        )
        for (event, query, blocker), count in s.waits.most_common(5):
            lines.append(f"  - waited on `{event}` in {count} sample(s): `{query}`, blocked by `{blocker}`")
        seen = sum(s.active_events.values())
        if seen:
            events = ", ".join(f"{e} {100 * c / seen:.0f} %" for e, c in s.active_events.most_common(5))
            lines.append(f"  - active backends seen {seen} times; their wait events: {events}")
            for query, count in s.active_queries.most_common(3):
                lines.append(f"  - active on `{query}` {count} time(s)")
        for kind, f in sorted(r["statements"].items()):
            lines.append(
                f"  - {kind}: {f['count']:,}, {f['total']:.2f} s in all, mean {1000 * f['mean']:.2f} ms, "
                f"p95 {1000 * f['p95']:.2f} ms, max {1000 * f['max']:.1f} ms"
            )
        if r["cpu"]["bench_backends"] is not None:
            lines.append(
                f"  - the bench's own backends (poller, gate, statistics, sampler): "
                f"{r['cpu']['bench_backends']:.2f} s CPU"
            )
        c = r["connections"]
        lines.append(
            f"  - connections: max_connections {c['max_connections']}, {c['in_use']} in use before the round, "
            f"{c['needed']} expected for it; at most {s.max_backends} of the bench database's in a sample"
        )
    return "\n".join(lines)


def mean_p95(statements: dict, kind: str) -> str:
    f = statements.get(kind)
    return f"{1000 * f['mean']:.2f} / {1000 * f['p95']:.2f}" if f else "—"


def seconds_share(seconds: float | None, capacity: float) -> str:
    return "—" if seconds is None else f"{seconds:.1f} ({100 * seconds / capacity:.0f} %)"


def cpu_table(results: list[dict]) -> str:
    """The CPU time of each part during each round (the seconds, and their share of the wall time
    × the machine's cores), and the queue's statements timed by the workers."""
    lines = [
        "| workers | wall s | CPU s available | machine busy | PostgreSQL server | its backends for the bench "
        "database | workers | bench | the rest | claim transaction mean / p95 ms | empty polls (mean ms) "
        "| finish mean / p95 ms | workers' time in queue statements | samples with an active backend "
        "(max) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- |",
    ]
    cores = os.cpu_count() or 1
    for r in results:
        c, st, s = r["cpu"], r["statements"], r["sampler"]
        capacity = r["wall_s"] * cores
        busy = c["machine_busy"] / c["machine_all"] * capacity if c["machine_all"] else 0.0
        rest = None if c["server"] is None else busy - c["server"] - c["workers"] - c["bench"]

        empty = st.get("empty poll")
        in_queue = sum(st[kind]["total"] for kind in QUEUE_STATEMENTS if kind in st)
        lines.append(
            f"| {r['workers']} | {r['wall_s']:.1f} | {capacity:.1f} | {seconds_share(busy, capacity)} "
            f"| {seconds_share(c['server'], capacity)} | {seconds_share(c['backends'], capacity)} "
            f"| {seconds_share(c['workers'], capacity)} | {seconds_share(c['bench'], capacity)} "
            f"| {seconds_share(rest, capacity)} | {mean_p95(st, 'claim transaction')} "
            f"| {f'{empty["count"]:,} ({1000 * empty["mean"]:.2f})' if empty else '0'} | {mean_p95(st, 'finish')} "
            f"| {100 * in_queue / (r['workers'] * r['wall_s']):.0f} % "
            f"| {100 * s.active_samples / max(1, s.samples):.0f} % of {s.samples} ({s.max_active}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (default 1 2 4)"
    )
    parser.add_argument("--runs", type=int, default=60, help="runs enqueued for each worker count")
    parser.add_argument("--rows", type=int, default=400, help="at least this many rows per train run's batch")
    parser.add_argument(
        "--kind", choices=["train", "claim", "drift"], default="train", help="drift: the 100M-row drift check"
    )
    parser.add_argument("--drift-rows", type=int, default=100_000_000, help="rows of the drift part's file")
    parser.add_argument("--drift-methods", nargs="+", choices=["PSI", "KS"], default=["PSI", "KS"])
    parser.add_argument(
        "--drift-threads", type=int, nargs="+", default=[1, 2], help="DriftStream threads (default 1 2)"
    )
    parser.add_argument("--chunk-rows", type=int, default=0, help="rows per chunk (default CHECK_CHUNK_ROWS)")
    parser.add_argument(
        "--scratch", help="the drift part's folder, kept and reused (default: a temporary one)"
    )
    parser.add_argument("--drift-child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--database-url", default=DEFAULT_URL, help="a PostgreSQL database: dropped and re-created"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds to wait for one worker count's runs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database at the end")
    parser.add_argument(
        "--worker-beat-seconds",
        type=float,
        default=0,
        help="the workers' WORKER_BEAT_SECONDS (default: the setting's); longer than a round, a "
        "worker's heartbeat thread does not connect during it",
    )
    parser.add_argument("--timed-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timed_worker:
        timed_worker(args.timed_worker)
        return
    if args.drift_child:
        print(json.dumps(drift_child(json.loads(args.drift_child))))
        return
    if args.kind == "drift":
        if args.drift_rows < 1 or args.chunk_rows < 0 or any(n < 1 for n in args.drift_threads):
            parser.error("--drift-rows and --drift-threads must be at least 1, --chunk-rows at least 0")
        drift_main(args)
        return
    if not args.database_url.startswith("postgres"):
        parser.error("--database-url: must be a PostgreSQL URL (postgres://…)")
    if args.runs < 1 or any(n < 1 for n in args.workers):
        parser.error("--runs and --workers must be at least 1")

    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    # This process and the workers share the bench's data directory (the secret key DEBUG=0
    # needs, setup_workspace's login file) and media (the runs' artifacts): nothing in ./data.
    settings_env = {
        "DATABASE_URL": args.database_url,
        "DATA_DIR": str(scratch / "data"),
        "MEDIA_ROOT": str(scratch / "media"),
        "DEBUG": "0",
        "RUN_THREADS": "1",
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
    }
    os.environ.update(settings_env)
    env = {**os.environ, **settings_env}
    if args.worker_beat_seconds:
        env["WORKER_BEAT_SECONDS"] = str(args.worker_beat_seconds)
    load_at_start = load_now()
    results = []
    try:
        recreate_database(args.database_url)
        import django

        django.setup()
        t0 = time.perf_counter()
        user = prepare_workspace()
        print(
            f"database {maintenance_url(args.database_url)[1]} created and prepared in {time.perf_counter() - t0:.1f} s"
        )
        request = batch_request(args.rows)
        from runs.families import get_family, worlds

        resolved = worlds.resolve(get_family("pricing"), request)
        what = (
            f"train runs of {RECIPE}: {worlds.describe(get_family('pricing'), resolved)}"
            if args.kind == "train"
            else "tasks of runs cancelled before a worker took them (the queue's own overhead)"
        )
        print(f"kind {args.kind}: {what}")
        header = machine_line(args.database_url)
        for n in args.workers:
            result = measure(args.kind, n, args, user, request, env, scratch)
            results.append(result)
            print(
                f"{n} worker(s): {result['runs']} in {result['wall_s']:.1f} s wall, "
                f"{result['once']}/{result['runs']} once, load {result['load_end']:.2f}",
                flush=True,
            )
            if not result["done"]:
                break
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(args.database_url)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{header}\n")
    print(f"`bench/bench_scale.py --kind {args.kind} --runs {args.runs} --rows {args.rows}`\n")
    print(table(args.kind, results))
    print()
    print(cpu_table(results))
    print()
    print(details(results))
    print(f"\nload average (1, 5, 15 min) at the start {load_at_start}, at the end {load_now()}")


if __name__ == "__main__":
    main()
