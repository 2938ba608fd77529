"""MLflow's local file layout (an ``mlruns`` folder, what ``mlflow`` writes with a file tracking
URI), read and written with no Django import: the import command reads it, the run export
writes it, and MLflow's own tools read what the export writes.

    mlruns/<experiment id>/meta.yaml
    mlruns/<experiment id>/<run id>/meta.yaml
    mlruns/<experiment id>/<run id>/params/<key>      the value
    mlruns/<experiment id>/<run id>/metrics/<key>     one line per point: "timestamp value step"
    mlruns/<experiment id>/<run id>/tags/<key>        the value
    mlruns/<experiment id>/<run id>/artifacts/...     the files

A key with slashes is a path of folders (``metrics/train/loss``), as MLflow writes it.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from .protocol import STATUS_NAME, STATUS_NUMBER

# Folders of an experiment that are not runs (MLflow 3's logged models, datasets, traces).
NOT_RUNS = {"models", "datasets", "traces", "tags", ".trash"}


class LayoutError(ValueError):
    """An mlruns folder or zip this module cannot read (the message names the file)."""


@dataclass
class SourceRun:
    """One run as MLflow describes it (from an mlruns folder or a tracking server)."""

    run_id: str
    experiment_id: str
    run_name: str = ""
    status: str = "FINISHED"  # MLflow's RunStatus name
    start_time: int | None = None  # milliseconds since the epoch
    end_time: int | None = None
    user_id: str = ""
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # key -> [(timestamp, value, step)], in the order logged
    metrics: dict[str, list[tuple[int, float, int]]] = field(default_factory=dict)
    artifacts_dir: Path | None = None  # a folder holding the run's artifacts


# ----------------------------------------------------------------------------- writing


def experiment_meta(experiment_id: str, name: str, created_ms: int | None, updated_ms: int | None) -> bytes:
    return _yaml(
        {
            "artifact_location": f"mlflow-artifacts:/experiments/{experiment_id}",
            "creation_time": created_ms,
            "experiment_id": experiment_id,
            "last_update_time": updated_ms,
            "lifecycle_stage": "active",
            "name": name,
        }
    )


def run_entries(run: SourceRun) -> Iterator[tuple[str, bytes]]:
    """(path inside the run's folder, content) of its meta.yaml, params, metrics and tags."""
    yield (
        "meta.yaml",
        _yaml(
            {
                "artifact_uri": "artifacts",
                "end_time": run.end_time,
                "entry_point_name": "",
                "experiment_id": run.experiment_id,
                "lifecycle_stage": "active",
                "run_id": run.run_id,
                "run_name": run.run_name,
                "run_uuid": run.run_id,
                "source_name": "",
                "source_type": 4,  # LOCAL
                "source_version": "",
                "start_time": run.start_time,
                "status": STATUS_NUMBER.get(run.status, STATUS_NUMBER["FINISHED"]),
                "tags": [],
                "user_id": run.user_id,
            }
        ),
    )
    for key, value in sorted(run.params.items()):
        yield f"params/{_key_path(key)}", value.encode()
    for key, points in sorted(run.metrics.items()):
        lines = "".join(f"{ts} {_number_text(value)} {step}\n" for ts, value, step in points)
        yield f"metrics/{_key_path(key)}", lines.encode()
    for key, value in sorted(run.tags.items()):
        yield f"tags/{_key_path(key)}", value.encode()


def _yaml(data: dict) -> bytes:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, width=10_000).encode()


def _number_text(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(float(value))


def _key_path(key: str) -> str:
    parts = PurePosixPath(key).parts
    if not parts or any(p in ("..", ".", "/") for p in parts):
        raise LayoutError(f"key {key!r} cannot be a file name")
    return "/".join(parts)


# ----------------------------------------------------------------------------- reading


def extract_zip(archive: Path, destination: Path) -> Path:
    """Unpack an export (a zip of an mlruns folder) under `destination`, refusing any member
    that would land outside it; returns the mlruns folder inside."""
    destination = destination.resolve()
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                target = (destination / member.filename).resolve()
                if destination != target and destination not in target.parents:
                    raise LayoutError(f"{archive.name}: member {member.filename!r} leaves the folder")
            zipped.extractall(destination)
    except zipfile.BadZipFile as error:
        raise LayoutError(f"{archive.name}: not a zip file ({error})") from None
    inner = destination / "mlruns"
    return inner if inner.is_dir() else destination


def _meta(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise LayoutError(f"{path}: not readable as YAML ({error})") from None
    return data if isinstance(data, dict) else {}


def experiments(root: Path) -> list[tuple[str, str, Path]]:
    """(experiment id, name, folder) of each experiment under the mlruns folder `root`."""
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "meta.yaml").is_file()):
        meta = _meta(folder / "meta.yaml")
        if meta.get("lifecycle_stage", "active") != "active":
            continue
        found.append(
            (str(meta.get("experiment_id", folder.name)), str(meta.get("name", folder.name)), folder)
        )
    return found


def _values(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        out[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
    return out


def _points(path: Path) -> list[tuple[int, float, int]]:
    points = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            timestamp, value = int(parts[0]), float(parts[1])
            step = int(parts[2]) if len(parts) > 2 else 0
        except (ValueError, IndexError):
            raise LayoutError(f"{path}: line {number} is not 'timestamp value step'") from None
        points.append((timestamp, value, step))
    return points


def read_run(folder: Path, experiment_id: str) -> SourceRun | None:
    """The run in `folder` (None when it is not an active run's folder)."""
    meta_path = folder / "meta.yaml"
    if folder.name in NOT_RUNS or not meta_path.is_file():
        return None
    meta = _meta(meta_path)
    run_id = str(meta.get("run_id") or meta.get("run_uuid") or "")
    if not run_id or meta.get("lifecycle_stage", "active") != "active":
        return None
    status = meta.get("status", "FINISHED")
    status = STATUS_NAME.get(status, "FINISHED") if isinstance(status, int) else str(status)
    metrics_dir = folder / "metrics"
    metrics = {}
    if metrics_dir.is_dir():
        for path in sorted(p for p in metrics_dir.rglob("*") if p.is_file()):
            metrics[path.relative_to(metrics_dir).as_posix()] = _points(path)
    tags = _values(folder / "tags")
    artifacts = folder / "artifacts"
    return SourceRun(
        run_id=run_id,
        experiment_id=experiment_id,
        run_name=str(meta.get("run_name") or tags.get("mlflow.runName") or ""),
        status=status if status in STATUS_NUMBER else "FINISHED",
        start_time=meta.get("start_time"),
        end_time=meta.get("end_time"),
        user_id=str(meta.get("user_id") or ""),
        params=_values(folder / "params"),
        tags=tags,
        metrics=metrics,
        artifacts_dir=artifacts if artifacts.is_dir() else None,
    )


def read_runs(root: Path, experiment: str | None = None) -> Iterator[SourceRun]:
    """The active runs under the mlruns folder `root`, of the experiment named or numbered
    `experiment` (all experiments when None), oldest first."""
    chosen = [e for e in experiments(root) if experiment is None or experiment in (e[0], e[1])]
    if experiment is not None and not chosen:
        raise LayoutError(f"{root}: no experiment named or numbered {experiment!r}")
    runs = []
    for experiment_id, _, folder in chosen:
        for child in sorted(p for p in folder.iterdir() if p.is_dir()):
            run = read_run(child, experiment_id)
            if run is not None:
                runs.append(run)
    runs.sort(key=lambda r: (r.start_time or 0, r.run_id))
    yield from runs


def artifact_files(folder: Path | None) -> Iterator[tuple[str, Path]]:
    """(relative posix path, file) of every file under an artifacts folder, skipping links
    (an export never contains one; a link could point anywhere)."""
    if folder is None:
        return
    for dirpath, _dirnames, filenames in os.walk(folder, followlinks=False):
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            yield path.relative_to(folder).as_posix(), path
