"""The pure parts: field readers, artifact paths, page tokens, the mlruns layout."""

import math

import pytest

from mlflow_api import mlruns, protocol
from mlflow_api.protocol import MlflowError


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1.0), (0.5, 0.5), ("NaN", math.nan), ("Infinity", math.inf), ("-Infinity", -math.inf), ("2.5", 2.5)],
)
def test_numbers_as_proto3_json_writes_them(value, expected):
    got = protocol.number(value, "value")
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


@pytest.mark.parametrize("value", [True, None, "high", [1], {"a": 1}])
def test_not_numbers(value):
    with pytest.raises(MlflowError, match="'value'"):
        protocol.number(value, "value")


@pytest.mark.parametrize(("value", "expected"), [(5, 5), ("5", 5), (5.0, 5), ("-3", -3), (None, None)])
def test_integers(value, expected):
    assert protocol.integer({"step": value}, "step") == expected


@pytest.mark.parametrize("value", [1.5, "1.5", True, "1e3", [1]])
def test_not_integers(value):
    with pytest.raises(MlflowError, match="'step'"):
        protocol.integer({"step": value}, "step")


def test_a_metric_message_names_its_fields():
    assert protocol.metric({"key": "a", "value": 1}, "metrics[0]", now_ms=7) == {
        "key": "a",
        "value": 1.0,
        "timestamp": 7,
        "step": 0,
    }
    with pytest.raises(MlflowError, match=r"'metrics\[2\].step'"):
        protocol.metric({"key": "a", "value": 1, "step": "x"}, "metrics[2]", now_ms=7)
    with pytest.raises(MlflowError, match="'timestamp'"):
        protocol.metric({"key": "a", "value": 1, "timestamp": "x"}, "", now_ms=7)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("runs/run_1/a.txt", ("run_1", "a.txt")),
        ("runs/run_1", ("run_1", "")),
        ("runs/run_1/m/x y.bin", ("run_1", "m/x y.bin")),
    ],
)
def test_artifact_paths(path, expected):
    assert protocol.split_artifact_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "",
        "run_1/a.txt",
        "experiments/x/a.txt",
        "runs/run_1/../run_2/a.txt",
        "runs/../etc/passwd",
        "runs/run_1/%2e%2e/a.txt",
        "runs/run_1/%252e%252e/a.txt",
        "runs/run_1/a\\b",
        "runs/run_1/./a",
        "runs/run_1//a",
        "runs/run_1/a\x00b",
    ],
)
def test_unsafe_artifact_paths_are_refused(path):
    with pytest.raises(MlflowError, match="'path'"):
        protocol.split_artifact_path(path)


def test_page_tokens_round_trip_and_garbage_is_refused():
    assert protocol.page_offset(protocol.page_token(40)) == 40
    assert protocol.page_offset("") == 0
    for bad in ("nope", protocol.page_token(-1), "eyJvZmZzZXQiOiAiMSJ9"):
        with pytest.raises(MlflowError, match="'page_token'"):
            protocol.page_offset(bad)


def test_an_mlruns_run_written_is_read_back(tmp_path):
    run = mlruns.SourceRun(
        run_id="r1",
        experiment_id="7",
        run_name="a run",
        status="KILLED",
        start_time=1000,
        end_time=2000,
        user_id="ann",
        params={"alpha": "0.5", "nested/key": "x"},
        tags={"mlflow.runName": "a run", "team": "eu"},
        metrics={"loss": [(1000, 1.0, 0), (1001, math.nan, 1), (1002, math.inf, 2)], "a/b": [(5, 2.0, 0)]},
    )
    root = tmp_path / "mlruns"
    (root / "7").mkdir(parents=True)
    (root / "7" / "meta.yaml").write_bytes(mlruns.experiment_meta("7", "exp", 1, 2))
    for name, content in mlruns.run_entries(run):
        path = root / "7" / "r1" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (root / "7" / "r1" / "artifacts" / "d").mkdir(parents=True)
    (root / "7" / "r1" / "artifacts" / "d" / "f.txt").write_text("hi")
    (back,) = list(mlruns.read_runs(root, "exp"))
    assert (back.run_id, back.status, back.start_time, back.end_time, back.user_id) == (
        "r1",
        "KILLED",
        1000,
        2000,
        "ann",
    )
    assert back.params == run.params and back.tags == run.tags
    assert back.metrics["a/b"] == [(5, 2.0, 0)]
    loss = back.metrics["loss"]
    assert loss[0] == (1000, 1.0, 0) and math.isnan(loss[1][1]) and loss[2][1] == math.inf
    assert [name for name, _ in mlruns.artifact_files(back.artifacts_dir)] == ["d/f.txt"]
    with pytest.raises(mlruns.LayoutError, match="no experiment"):
        list(mlruns.read_runs(root, "other"))


def test_old_two_column_metric_lines_and_bad_lines(tmp_path):
    path = tmp_path / "m"
    path.write_text("100 0.5\n101 0.25 3\n")
    assert mlruns._points(path) == [(100, 0.5, 0), (101, 0.25, 3)]
    path.write_text("100 high 1\n")
    with pytest.raises(mlruns.LayoutError, match="line 1"):
        mlruns._points(path)


def test_keys_that_are_not_file_names_are_refused():
    run = mlruns.SourceRun(run_id="r", experiment_id="1", params={"../up": "x"})
    with pytest.raises(mlruns.LayoutError, match="cannot be a file name"):
        list(mlruns.run_entries(run))
