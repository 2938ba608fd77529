"""Distributed LightGBM training on an existing Dask cluster (issue #16 §3). Plain Python, no Django.

A train run whose training stage says ``distributed: "dask"`` (``recipes.distributed_config``)
of a family with ``fit_dask`` (location scoring, next best action) trains here, on every row of
its dataset, instead of on a TRAIN_MAX_ROWS sample in its own process:

1. The holdout is a rule on a row, not a draw over the whole table, so the run's process can
   apply it to one chunk at a time (``Holdout``): ``random_holdout`` (and ``kfold``) puts a row
   in the holdout when a seeded hash of its grain (``site_id``, ``customer_id``) falls in the
   lowest ``test_size`` share — every row of one entity on the same side; ``time_holdout`` (and
   ``rolling_origin``) when its time is after the last ``test_size`` share of the dataset's time
   range. The split is therefore not the row-for-row split of a local run (the same share, the
   same method, other rows).
2. A first pass (``scan``) reads only the time and the text columns: the time range (for a time
   holdout) and every category level of the whole dataset, which the model's encoding needs
   before the first chunk is encoded (a level seen only in the holdout gets a code no training
   row has: harmless). When the family's ``prepare`` keeps one row per entity (location
   scoring's ``drop_duplicate_sites``, next best action's ``dedupe``: asked of ``prepare``
   itself, ``keeps_latest``), the first pass reads every column and prepares each chunk too
   (``LatestRows``): prepare of one chunk keeps the entity's latest row *in that chunk*, so the
   pass records, per entity key hash, the time and position of its latest row over every chunk,
   and the rows that lost to a row of another chunk (*superseded*: positions in the dataset).
3. The second pass reads the dataset chunk by chunk (``runs.data.read_chunks``: Parquet row
   groups, CSV chunks), applies the family's ``prepare`` to each chunk (row-local but for its
   de-duplication), leaves out the superseded rows — so the rows kept are those ``prepare`` of
   the whole dataset keeps, as in a local run (but for a collision of 64-bit hashes) —, drops
   the holdout rows and hands the rest to the family's ``fit_dask``, which encodes them and
   ``Cluster.scatter``s them: the run's process holds one chunk at a time (and the first pass's
   arrays: 24 bytes per distinct entity), the cluster's workers hold the training data.
4. ``Cluster.fit`` trains with ``lightgbm.dask``'s estimators on those arrays with the family's
   own hyperparameters (LightGBM's data-parallel learner: the histograms are summed over the
   workers, so the trees are close to, not bit-identical with, a local run's). The family keeps
   the fitted ``booster_``: the model is saved, checked and predicts exactly like a local one.
5. Evaluation, the drift profile and explanations use the run's local sample (``runs.data.
   read_sample``, as every train run reads its data): its holdout rows are a uniform sample of
   the dataset's holdout, which never reached the cluster.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recipes import distributed_config

from .data import read_chunks, table_columns
from .score_stream import entity_hashes

CONNECT_TIMEOUT_SECONDS = 30
# Rows per chunk when the run's data is an in-memory frame (synthetic data).
FRAME_CHUNK_ROWS = 100_000


class ClusterError(Exception):
    """Distributed training cannot run; the message says why and what to do."""


def wanted(spec: dict, family) -> bool:
    """Whether this run trains on the cluster: a train run whose manifest asks for it, of a
    family that can."""
    return (
        spec.get("run_type") == "train"
        and distributed_config.requested(spec.get("manifest")) is not None
        and hasattr(family, "fit_dask")
    )


# --- the holdout as a rule on a row -----------------------------------------------------------


def _validation(manifest: dict) -> dict:
    return dict(((manifest.get("evaluation") or {}).get("validation")) or {})


@dataclass
class Holdout:
    """Which rows are the holdout: by a seeded hash of the grain, or by time (see the module
    docstring). ``cutoff`` is set for a time holdout."""

    grain: str
    time: str
    test_size: float
    seed: int
    by_time: bool
    cutoff: pd.Timestamp | None = None

    @classmethod
    def of(cls, family, manifest: dict) -> Holdout:
        v = _validation(manifest)
        test_size = float(v.get("test_size", 0.2))
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"validation.test_size must be in (0, 1), got {test_size}")
        return cls(
            grain=family.GRAIN,
            time=family.TIME,
            test_size=test_size,
            seed=int(v.get("seed", 42)),
            by_time=v.get("method", "random_holdout") in ("time_holdout", "rolling_origin"),
        )

    def set_range(self, low, high) -> None:
        if self.by_time:
            if low is None or high is None or pd.isna(low) or pd.isna(high):
                raise ClusterError(f"a time holdout needs times: column '{self.time}' has none")
            self.cutoff = high - (high - low) * self.test_size

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """True for the frame's holdout rows."""
        if self.by_time:
            return (_times(frame[self.time]) > self.cutoff).to_numpy()
        if self.grain not in frame.columns:
            raise ClusterError(
                f"distributed training assigns holdout rows by the grain column '{self.grain}', "
                "which the data lacks: add it"
            )
        key = f"{self.seed:016d}"[-16:]
        hashed = pd.util.hash_pandas_object(frame[self.grain].astype(str), index=False, hash_key=key)
        return (hashed.to_numpy() % (1 << 32)) < self.test_size * (1 << 32)

    def split(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(training rows, holdout rows) of a prepared frame."""
        test = self.mask(frame)
        return frame.loc[~test].reset_index(drop=True), frame.loc[test].reset_index(drop=True)


def _times(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, errors="coerce")


# --- the first pass ---------------------------------------------------------------------------


@dataclass
class Scan:
    """What the first pass learns: rows, the time range, every text column's levels, and the
    rows their chunk's prepare() keeps that the whole dataset's would not (``superseded``:
    positions in the dataset; None when prepare() keeps every entity's every row)."""

    rows: int = 0
    time_min: pd.Timestamp | None = None
    time_max: pd.Timestamp | None = None
    levels: dict[str, list[str]] = field(default_factory=dict)
    superseded: np.ndarray | None = None


def text_columns(family) -> list[str]:
    """The family's text columns but its grain: the ones a model encodes as categories."""
    return [c["name"] for c in family.SCHEMA if c.get("dtype") == "string" and c["name"] != family.GRAIN]


def scan(chunks: Iterator[pd.DataFrame], family, latest: LatestRows | None = None) -> Scan:
    """One pass over ``chunks`` (only the time and text columns need be read, unless ``latest``
    is given: then every column, which it prepares chunk by chunk to find the superseded rows)."""
    out, seen = Scan(), {col: set() for col in text_columns(family)}
    for chunk in positioned(chunks) if latest is not None else chunks:
        out.rows += len(chunk)
        if family.TIME in chunk.columns:
            times = _times(chunk[family.TIME]).dropna()
            if len(times):
                low, high = times.min(), times.max()
                out.time_min = low if out.time_min is None else min(out.time_min, low)
                out.time_max = high if out.time_max is None else max(out.time_max, high)
        for col, levels in seen.items():
            if col in chunk.columns:
                levels.update(chunk[col].dropna().astype(str).unique().tolist())
        if latest is not None:
            latest.add(chunk)
    out.levels = {col: sorted(levels) for col, levels in seen.items()}
    out.superseded = latest.superseded() if latest is not None else None
    return out


# --- an entity's latest row across chunks ---------------------------------------------------

POSITION = "__row_position__"  # a row's place in the dataset, carried through prepare()


def positioned(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The chunks with each row's position in the dataset (0, 1, ... in chunk order) as a column,
    the same on both passes."""
    start = 0
    for chunk in chunks:
        yield chunk.assign(**{POSITION: np.arange(start, start + len(chunk), dtype=np.int64)})
        start += len(chunk)


def prepares(manifest: dict) -> bool:
    """Whether the run applies the family's prepare() (its pipeline has a feature_prep stage)."""
    stages = (manifest.get("pipeline") or {}).get("stages") or []
    return any(stage.get("type") == "feature_prep" for stage in stages)  # as the pipeline does


def keeps_latest(family, manifest: dict, prepared: pd.DataFrame) -> bool:
    """Whether the run's prepare() keeps one row per entity (the grain): location scoring's
    ``drop_duplicate_sites`` and next best action's ``dedupe``, each its own switch and default,
    so prepare() itself is asked: two copies of a row it kept (one of ``prepared``, the run's
    prepared sample) come back as one."""
    if not prepares(manifest) or prepared.empty or family.GRAIN not in prepared.columns:
        return False
    row = prepared.iloc[:1]
    return len(family.prepare(pd.concat([row, row], ignore_index=True), manifest, log=_quiet)) == 1


class LatestRows:
    """Which rows prepare() of the whole dataset keeps, found chunk by chunk (the first pass),
    for a family whose prepare() keeps an entity's latest row: after its row filters (a missing
    label), the row with the latest time (a missing time counts as latest, as pandas sorts it
    last), the last in the file among equal times. prepare() of one chunk keeps its latest row of
    each entity; of those, the one latest over every chunk stays, the others are *superseded*.

    Memory: per distinct entity a 64-bit hash of its key (``runs.score_stream.entity_hashes``:
    a number in one chunk and the same number read as a decimal in another are one entity), its
    kept row's time and position (24 bytes; copies of them while a chunk is merged), plus the
    superseded positions; no Python object per row. Two entities whose hashes collide count as
    one: for n entities the chance is about n²/2^65 (3·10^-8 for a million)."""

    def __init__(self, family, manifest: dict):
        self.family, self.manifest = family, manifest
        self.hashes = np.empty(0, dtype=np.uint64)
        self.times = np.empty(0, dtype=np.int64)
        self.positions = np.empty(0, dtype=np.int64)
        self._superseded: list[np.ndarray] = []

    def add(self, chunk: pd.DataFrame) -> None:
        """A raw chunk with its ``POSITION`` column (``positioned``)."""
        kept = self.family.prepare(chunk, self.manifest, log=_quiet)
        if kept.empty or self.family.GRAIN not in kept.columns:
            return
        hashes = entity_hashes(kept[[self.family.GRAIN]])
        times = _time_keys(kept, self.family.TIME)
        positions = kept[POSITION].to_numpy(dtype=np.int64)
        # Ordered by entity, then time, then position: the last row of each entity is its latest.
        order = np.lexsort((positions, times, hashes))
        hashes, times, positions = hashes[order], times[order], positions[order]
        last = np.r_[hashes[1:] != hashes[:-1], True]
        self._superseded.append(positions[~last])  # none unless two keys share a hash
        hashes, times, positions = hashes[last], times[last], positions[last]
        # Merged with the latest rows so far (sorted by hash, one per entity): a stable sort puts an
        # entity's earlier row before this chunk's, which is later in the file and wins a tie.
        hashes = np.concatenate([self.hashes, hashes])
        times = np.concatenate([self.times, times])
        positions = np.concatenate([self.positions, positions])
        order = np.argsort(hashes, kind="stable")
        hashes, times, positions = hashes[order], times[order], positions[order]
        pairs = np.flatnonzero(hashes[1:] == hashes[:-1])
        losers = np.where(times[pairs + 1] >= times[pairs], pairs, pairs + 1)
        self._superseded.append(positions[losers])
        keep = np.ones(len(hashes), dtype=bool)
        keep[losers] = False
        self.hashes, self.times, self.positions = hashes[keep], times[keep], positions[keep]

    def superseded(self) -> np.ndarray:
        """The positions of the rows kept by their chunk's prepare() but not the dataset's, sorted."""
        return np.sort(np.concatenate([np.empty(0, dtype=np.int64), *self._superseded]))


def _time_keys(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Each row's time as int64 nanoseconds since the epoch (UTC), a missing time the largest;
    zeros without a time column (then the file order alone decides)."""
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=np.int64)
    times = pd.to_datetime(frame[column], errors="coerce", utc=True)
    keys = times.to_numpy(dtype="datetime64[ns]").view(np.int64).copy()
    keys[times.isna().to_numpy()] = np.iinfo(np.int64).max
    return keys


# --- where the chunks come from -------------------------------------------------------------


def chunk_source(spec: dict, raw: pd.DataFrame, family) -> tuple[Callable, Callable]:
    """(all columns, scan columns): callables giving a fresh iterator of the run's data in
    chunks — the dataset's file (``runs.data.read_chunks``), or the in-memory frame a
    synthetic run generated, in slices."""
    source = spec.get("data") or {}
    if "path" in source:
        path, fmt = Path(source["path"]), source["format"]
        wanted_cols = [family.TIME, *text_columns(family)]
        present = set(table_columns(path, fmt))
        scan_cols = [c for c in wanted_cols if c in present]
        return (lambda: read_chunks(path, fmt)), (lambda: read_chunks(path, fmt, columns=scan_cols))

    def slices(columns=None):
        frame = raw if columns is None else raw[[c for c in columns if c in raw.columns]]
        for start in range(0, len(frame), FRAME_CHUNK_ROWS):
            yield frame.iloc[start : start + FRAME_CHUNK_ROWS]

    return slices, (lambda: slices([family.TIME, *text_columns(family)]))


def _quiet(_message: str, *_args) -> None:
    """A chunk's prepare() speaks once per chunk: the run's log says what the pass did instead."""


def training_frames(
    chunks: Iterator[pd.DataFrame],
    family,
    manifest: dict,
    holdout: Holdout,
    counts: dict,
    superseded: np.ndarray | None = None,
):
    """The prepared training rows of each chunk (holdout rows left out; with ``superseded``, the
    first pass's ``Scan.superseded``, an entity's rows superseded in another chunk too);
    ``counts`` gets the rows read, prepared (as prepare() of the whole dataset keeps them) and
    held out, and the superseded rows left out."""
    prepare = prepares(manifest)
    for chunk in positioned(chunks) if superseded is not None else chunks:
        counts["read"] += len(chunk)
        prepared = family.prepare(chunk, manifest, log=_quiet) if prepare else chunk
        if superseded is not None:
            later = np.isin(prepared[POSITION].to_numpy(dtype=np.int64), superseded, assume_unique=True)
            counts["superseded"] = counts.get("superseded", 0) + int(later.sum())
            prepared = prepared.loc[~later].drop(columns=POSITION)
        counts["prepared"] += len(prepared)
        test = holdout.mask(prepared)
        counts["holdout"] += int(test.sum())
        if (~test).any():
            yield prepared.loc[~test].reset_index(drop=True)


# --- the cluster ------------------------------------------------------------------------------


class Cluster:
    """A client of the Dask cluster at ``address``: parts scattered to its workers in turn,
    LightGBM trained on them with ``lightgbm.dask``. Use as a context manager."""

    def __init__(self, address: str, timeout: float | None = None):
        # distributed and lightgbm.dask are imported only by a run that trains on a cluster: every
        # process that imports the pipeline would otherwise load them (~0.5 s, tornado, ...).
        import dask.array as da
        from distributed import Client

        self._da = da
        self.address = address
        timeout = CONNECT_TIMEOUT_SECONDS if timeout is None else timeout
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"could not connect to the Dask scheduler at {address} within {timeout:.0f} s ({exc}): "
                "check DASK_SCHEDULER_ADDRESS and that the cluster is up"
            ) from None
        self.workers = sorted(self.client.scheduler_info()["workers"])
        if not self.workers:
            self.close()
            raise ClusterError(f"the Dask cluster at {address} has no workers")
        self._next = 0

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def scatter(self, *arrays: np.ndarray) -> tuple:
        """One part (arrays of equal length) sent to the next worker; dask arrays of its futures.
        The caller's copies can go: the worker holds them."""
        worker = self.workers[self._next % len(self.workers)]
        self._next += 1
        futures = self.client.scatter(list(arrays), workers=[worker], hash=False)
        return tuple(
            self._da.from_delayed(f, shape=a.shape, dtype=a.dtype)
            for f, a in zip(futures, arrays, strict=True)
        )

    def concat(self, parts: list[tuple]) -> tuple:
        """Parts (``scatter``'s tuples) as one dask array per position."""
        return tuple(self.stack(*(p[i] for p in parts)) for i in range(len(parts[0])))

    def stack(self, *arrays):
        """Dask arrays of the cluster, one after the other (their parts stay where they are)."""
        return self._da.concatenate(list(arrays), axis=0)

    def fit(
        self,
        X,
        y,
        params: dict,
        rounds: int,
        *,
        weight=None,
        categorical: list[int] | None = None,
        names: list[str] | None = None,
    ):
        """A LightGBM booster trained on the cluster with ``params`` (a family's ``lightgbm.train``
        params) for ``rounds`` rounds: a binary objective through ``DaskLGBMClassifier``, any
        other through ``DaskLGBMRegressor``; each worker's thread count is its own (lightgbm.dask
        sets it)."""
        import lightgbm.dask as lgb_dask  # lazy: see __init__

        kwargs = {k: v for k, v in params.items() if k not in ("num_threads", "n_jobs")}
        estimator_class = (
            lgb_dask.DaskLGBMClassifier if kwargs.get("objective") == "binary" else lgb_dask.DaskLGBMRegressor
        )
        estimator = estimator_class(client=self.client, n_estimators=int(rounds), **kwargs)
        fit_kwargs = {}
        if categorical:
            fit_kwargs["categorical_feature"] = list(categorical)
        if names:
            fit_kwargs["feature_name"] = list(names)
        with warnings.catch_warnings(), self.client.as_current():
            # "Parameter n_jobs will be ignored": the estimator's own default, replaced per worker.
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
            estimator.fit(X, y, sample_weight=weight, **fit_kwargs)
        return estimator.booster_

    def predict(self, booster, X):
        """The booster's raw predictions of the cluster's rows ``X``, a dask array (computed there)."""
        # meta given: dask would otherwise call predict on an empty block to learn the output type
        return X.map_blocks(
            lambda block: booster.predict(block, num_threads=1),
            drop_axis=1,
            dtype=float,
            meta=np.empty((0,), dtype=float),
        )

    def compute(self, *values):
        """Dask values computed on the cluster (numbers, small arrays)."""
        with self.client.as_current():
            return self.client.compute(list(values), sync=True)


# --- a distributed train run ------------------------------------------------------------------


def train(spec: dict, family, raw: pd.DataFrame, sample: pd.DataFrame, log) -> tuple[tuple, object]:
    """A train run's training stage on the cluster: ((train, test), model). ``raw`` is the run's
    loaded data (a sample of a large dataset, or the synthetic frame), ``sample`` the same after
    feature_prep: its holdout rows are evaluated locally. ClusterError when it cannot run."""
    manifest = spec["manifest"]
    address = (spec.get("dask_scheduler_address") or "").strip()
    if not address:
        raise ClusterError(
            f"The training stage asks for distributed training on a Dask cluster "
            f"({distributed_config.switch_path(manifest)}), but the worker has no DASK_SCHEDULER_ADDRESS: "
            "set it to the cluster's scheduler (e.g. tcp://10.0.0.5:8786) on the workers and run again, "
            "or remove the switch to train in the worker."
        )
    all_chunks, scan_chunks = chunk_source(spec, raw, family)
    holdout = Holdout.of(family, manifest)
    if keeps_latest(family, manifest, sample):  # every column read and prepared, chunk by chunk
        seen = scan(all_chunks(), family, LatestRows(family, manifest))
    else:
        seen = scan(scan_chunks(), family)
    holdout.set_range(seen.time_min, seen.time_max)
    how = (
        f"after {holdout.cutoff}"
        if holdout.by_time
        else f"a {holdout.test_size:.0%} hash share of {holdout.grain}"
    )
    latest = (
        ""
        if seen.superseded is None
        else f"; {len(seen.superseded):,} rows of a {family.GRAIN} with a later row in another chunk "
        "left out, as feature_prep of the whole dataset would"
    )
    log(
        f"training: first pass over {seen.rows:,} rows: holdout = rows {how}; category levels of the "
        f"whole dataset{latest}"
    )
    split = holdout.split(sample)
    if split[0].empty or split[1].empty:
        raise ValueError("the split left the train or the test set empty")
    counts = {"read": 0, "prepared": 0, "holdout": 0}
    with Cluster(address) as cluster:
        frames = training_frames(all_chunks(), family, manifest, holdout, counts, seen.superseded)
        model, rows = family.fit_dask(frames, manifest, levels=seen.levels, cluster=cluster, log=log)
        log(
            f"training: trained on the Dask cluster at {address} with {len(cluster.workers)} workers "
            f"on all {rows:,} rows (the dataset's {counts['read']:,} rows, {counts['prepared']:,} after "
            f"feature_prep, less {counts['holdout']:,} holdout rows); evaluated here on the holdout rows "
            f"of the run's {len(sample):,}-row sample ({len(split[1]):,})"
        )
    return split, model
