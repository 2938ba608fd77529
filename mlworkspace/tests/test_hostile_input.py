"""Hostile JSON (issue 12, defects 3 and 4): documents nested deep enough to break Python's
recursion are a 400 naming where, on every JSON entry point; NaN/Infinity never reach a JSON
column, whatever writes it."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from django.core import checks
from django.db import connection, models
from django.test.utils import isolate_apps

from mlworkspace.fields import JSONField, SafeJSONEncoder, check_json_fields_are_safe, unsafe_json_fields
from mlworkspace.jsondepth import too_deep_in_text, too_deep_in_value
from models_registry.models import MLModel
from recipes.forms import parse_manifest_text
from recipes.manifest import validate_manifest
from recipes.models import Recipe, RecipeVersion
from runs.models import Dataset, Run
from runs.services import run_start
from runs.tests.factories import register

API = "/api/ml-development"


def nested(levels: int, leaf=1, key="a"):
    """{"a": {"a": ... leaf}} `levels` objects deep, built without recursion."""
    value = leaf
    for _ in range(levels):
        value = {key: value}
    return value


def nested_text(levels: int, key="a") -> str:
    """The JSON text of nested(levels) (json.dumps itself would recurse too deep)."""
    return f'{{"{key}": ' * levels + "1" + "}" * levels


def deep_stage_manifest(manifest: dict, levels: int) -> dict:
    out = copy.deepcopy(manifest)
    out["pipeline"]["stages"][0]["config"] = nested(levels)
    return out


# --------------------------------------------------------------------------- the scanners


def test_depth_scanners_agree_and_name_the_first_too_deep_container():
    body = '{"ok": [1, {"x": "[[[[{{{{"}], "deep": {"k/~": [[{"z": [[[1]]]}]]}}'
    value = json.loads(body)
    # depth: {} 1, "deep" 2, "k/~" list 3, list 4, {"z"} 5, 6, 7, 8
    for limit, expected in [(8, None), (7, "/deep/k~1~0/0/0/z/0/0"), (4, "/deep/k~1~0/0/0"), (1, "/ok")]:
        assert too_deep_in_text(body, limit) == expected
        assert too_deep_in_value(value, limit) == expected


def test_depth_scan_of_a_huge_document_does_not_recurse():
    text = "[" * 200_000 + "]" * 200_000
    assert too_deep_in_text(text, 64) == "/0" * 64
    assert too_deep_in_value(nested(200_000), 64) == "/a" * 64


def test_the_pure_helpers_have_no_django_import():
    """The pure core (recipes/manifest.py, runs/pipeline.py, runs/data.py) imports them."""
    modules = "mlworkspace.jsondepth, mlworkspace.csvsafe, mlworkspace.redact, recipes.manifest"
    code = f"import sys, {modules}; print(any(m.split('.')[0] == 'django' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- the API


@pytest.fixture
def objects(db, baselines, user):
    model = register(user)
    run = run_start(
        user=user, recipe=model.recipe, model=model, executor="external", params={"synthetic": {"rows": 500}}
    )
    return {"model": model, "run": run}


def counts():
    return (
        Recipe.objects.count(),
        RecipeVersion.objects.count(),
        MLModel.objects.count(),
        Run.objects.count(),
        Dataset.objects.count(),
    )


@pytest.mark.parametrize(
    "method, url, field",
    [
        ("post", "/recipes", "manifest"),
        ("put", "/recipes/recipe_pricing_base", "description"),
        ("post", "/recipes/recipe_pricing_base/versions", "manifest"),
        ("post", "/recipes/recipe_pricing_base/clone", "name"),
        ("post", "/recipes/recipe_pricing_base/rebase", "resolutions"),
        ("post", "/manifest/validate", "manifest"),
        ("post", "/models", "name"),
        ("put", "/models/{model}", "description"),
        ("post", "/models/{model}/predict", "rows"),
        ("post", "/models/{model}/monitoring/check", "shift"),
        ("post", "/runs", "params"),
        ("put", "/runs/{run}", "metrics_json"),
        ("post", "/chat", "message"),
    ],
)
def test_json_nested_10000_levels_is_a_400_naming_the_field(api_client, objects, method, url, field):
    url = url.format(model=objects["model"].id, run=objects["run"].id)
    before = counts()
    body = f'{{"{field}": {nested_text(10_000)}}}'
    response = getattr(api_client, method)(API + url, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    data = response.json()
    expected = f"/{field}" + "/a" * 63
    assert [e["path"] for e in data["errors"]] == [expected]
    assert "nested deeper than 64 levels" in data["errors"][0]["message"]
    assert data["detail"].startswith(expected)
    assert counts() == before


def test_json_within_the_limit_still_parses(api_client, baselines):
    # 64 levels in all: the body object plus 63 below it.
    body = f'{{"manifest": {nested_text(62)}}}'
    response = api_client.post(f"{API}/manifest/validate", body, content_type="application/json")
    assert response.status_code in (200, 400)
    assert "nested deeper" not in response.content.decode()


def test_the_depth_limit_is_a_setting(api_client, baselines, settings):
    settings.JSON_MAX_DEPTH = 8
    body = json.dumps({"manifest": nested(8)})
    response = api_client.post(f"{API}/manifest/validate", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "/manifest" + "/a" * 7


def test_the_parser_reads_no_more_than_the_body_limit(settings):
    import io

    from django.core.exceptions import RequestDataTooBig

    from mlworkspace.parsers import JSONParser

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    with pytest.raises(RequestDataTooBig):
        JSONParser().parse(io.BytesIO(b'{"a": "' + b"x" * 5000 + b'"}'))
    assert JSONParser().parse(io.BytesIO(b'{"a": [1, {"b": null}]}')) == {"a": [1, {"b": None}]}


def test_malformed_json_is_still_a_400(api_client, baselines):
    response = api_client.post(f"{API}/recipes", '{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    response = api_client.post(f"{API}/recipes", b'{"name": "\xff"}', content_type="application/json")
    assert response.status_code == 400


# --------------------------------------------------------------------------- manifests 900 deep


def test_manifest_with_a_900_level_stage_config_via_the_api_is_a_400(api_client, baselines):
    base = RecipeVersion.objects.get(pk="ver_pricing_base_v1").manifest
    manifest = deep_stage_manifest(base, 900)
    before = counts()
    body = '{"manifest": ' + _dumps(manifest) + "}"
    response = api_client.post(
        f"{API}/recipes/recipe_pricing_base/versions", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"].startswith("/manifest/pipeline/stages/0/config/a/a")
    created = api_client.post(
        f"{API}/recipes",
        '{"name": "Deep", "model_family": "pricing", "level": "baseline", "manifest": '
        + _dumps(deep_stage_manifest(base, 900))
        + "}",
        content_type="application/json",
    )
    assert created.status_code == 400
    assert created.json()["errors"][0]["path"].startswith("/manifest/pipeline/stages/0/config/a")
    assert counts() == before


def _dumps(manifest: dict) -> str:
    """JSON text of a manifest whose stage config is too deep for json.dumps: the config is
    written by hand."""
    config = manifest["pipeline"]["stages"][0]["config"]
    depth = 0
    while isinstance(config, dict):
        config = config.get("a")
        depth += 1
    placeholder = copy.deepcopy({k: v for k, v in manifest.items() if k != "pipeline"})
    pipeline = {
        **manifest["pipeline"],
        "stages": [{**manifest["pipeline"]["stages"][0], "config": "@@DEEP@@"}]
        + manifest["pipeline"]["stages"][1:],
    }
    text = json.dumps({**placeholder, "pipeline": pipeline})
    return text.replace('"@@DEEP@@"', nested_text(depth))


def test_manifest_with_a_900_level_config_via_the_html_form_is_a_form_error(as_user, baselines):
    base = RecipeVersion.objects.get(pk="ver_pricing_base_v1").manifest
    before = counts()
    response = as_user.post(
        "/model-development/recipes/recipe_pricing_base/versions/new",
        {"manifest": _dumps(deep_stage_manifest(base, 900)), "bump": "minor", "changelog": "deep"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "/pipeline/stages/0/config/a/a" in page
    assert "nested deeper than 64 levels" in page
    assert counts() == before
    # The live validation of the editor says the same.
    live = as_user.post(
        "/model-development/recipes/recipe_pricing_base/validate",
        {"manifest": _dumps(deep_stage_manifest(base, 900))},
    )
    assert live.status_code == 200
    assert "/pipeline/stages/0/config/a/a" in live.content.decode()


def test_a_deep_manifest_from_any_caller_of_the_service_is_refused(baselines, user):
    """Not through the parser or a form (a command, the chat's proposal): the service's
    manifest validation names the path; nothing recursive ran before it."""
    from mlworkspace.errors import InvalidInput
    from recipes import services

    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    manifest = deep_stage_manifest(recipe.current_version.manifest, 900)
    with pytest.raises(InvalidInput) as caught:
        services.version_create(recipe=recipe, user=user, manifest=manifest, bump="minor")
    assert caught.value.errors == [
        {
            "path": "/manifest/pipeline/stages/0/config" + "/a" * 60,
            "message": "nested deeper than 64 levels (the limit for JSON documents)",
        }
    ]
    assert recipe.versions.count() == 1


def test_validate_manifest_and_the_form_parser_report_depth():
    manifest = {"metadata": {}, "pipeline": {"stages": [{"config": nested(100)}]}}
    errors = validate_manifest(manifest, path_prefix="/manifest")
    assert errors == [
        {
            "path": "/manifest/pipeline/stages/0/config" + "/a" * 60,
            "message": "nested deeper than 64 levels (the limit for JSON documents)",
        }
    ]
    assert validate_manifest(manifest, max_depth=200) != errors  # the ordinary checks ran


@pytest.mark.django_db
def test_parse_manifest_text_refuses_deep_text_before_parsing():
    value, error = parse_manifest_text(nested_text(10_000))
    assert value is None
    assert error.startswith("Too deeply nested at /a/a/a")


@pytest.mark.django_db
def test_admin_json_form_fields_refuse_deep_text():
    field = Run._meta.get_field("params_json").formfield()
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Too deeply nested"):
        field.clean(nested_text(10_000))
    assert field.clean('{"a": 1}') == {"a": 1}


# --------------------------------------------------------------------------- NaN / Infinity


def test_the_safe_encoder_writes_non_finite_numbers_as_null():
    value = {
        "nan": float("nan"),
        "inf": float("inf"),
        "list": [1.5, -math.inf, np.float64("nan"), np.float32(2.5), np.int64(3), np.bool_(True)],
        "array": np.array([1.0, np.nan]),
        "fine": -1.25,
    }
    text = json.dumps(value, cls=SafeJSONEncoder)
    assert json.loads(text) == {
        "nan": None,
        "inf": None,
        "list": [1.5, None, None, 2.5, 3, True],
        "array": [1.0, None],
        "fine": -1.25,
    }
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.django_db
def test_nan_and_infinity_written_through_the_orm_are_stored_as_null(baselines, user):
    """Save, update() and bulk writes alike; read back raw from the database (on SQLite
    and, in CI, PostgreSQL, which refused the NaN token with a 500)."""
    model = register(user)
    run = run_start(user=user, recipe=model.recipe, model=model, executor="external")
    run.metrics_json = {"MAPE": float("nan"), "lift": np.float64("inf"), "ok": 0.5}
    run.plots_json = {"points": [1.0, float("-inf"), np.nan]}
    run.save()
    Run.objects.filter(pk=run.pk).update(stages_json=[{"seconds": float("nan")}])
    MLModel.objects.filter(pk=model.pk).update(metrics_json={"x": np.float32("nan")})

    run.refresh_from_db()
    assert run.metrics_json == {"MAPE": None, "lift": None, "ok": 0.5}
    assert run.plots_json == {"points": [1.0, None, None]}
    assert run.stages_json == [{"seconds": None}]
    model.refresh_from_db()
    assert model.metrics_json == {"x": None}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT metrics_json, stages_json FROM {Run._meta.db_table} WHERE id = %s", [run.pk])
        raw = " ".join(str(v) for v in cursor.fetchone())
    assert "NaN" not in raw and "Infinity" not in raw


@pytest.mark.django_db
def test_nan_in_other_json_columns_and_bulk_writes(baselines, user):
    version = RecipeVersion.objects.get(pk="ver_pricing_base_v1")
    RecipeVersion.objects.filter(pk=version.pk).update(approval_json={"gate": {"value": float("nan")}})
    version.refresh_from_db()
    assert version.approval_json == {"gate": {"value": None}}
    dataset = Dataset.objects.create(
        id="ds_nan",
        name="nan",
        file="datasets/none.csv",
        format="csv",
        size_bytes=0,
        sha256="0" * 64,
        row_count=0,
        columns_json=[{"name": "x", "null_ratio": float("nan"), "mean": np.float64("-inf")}],
        created_by=user,
    )
    dataset.validation_json = {"score": float("inf")}
    Dataset.objects.bulk_update([dataset], ["validation_json"])
    dataset.refresh_from_db()
    assert dataset.columns_json == [{"name": "x", "null_ratio": None, "mean": None}]
    assert dataset.validation_json == {"score": None}


@pytest.mark.parametrize(
    "name, content",
    [
        ("header_only.csv", b"week,price,units\n"),
        ("header_only_crlf.csv", b"week,price,units\r\n"),
    ],
)
def test_header_only_upload_is_never_a_500(api_client, baselines, name, content):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api_client.post(
        f"{API}/datasets",
        {"file": SimpleUploadedFile(name, content), "recipe_id": "recipe_pricing_base"},
        format="multipart",
    )
    assert response.status_code in (201, 400), response.content[:300]
    if response.status_code == 201:
        columns = response.json()["columns_json"]
        assert [c["name"] for c in columns] == ["week", "price", "units"]
        assert all(c["null_ratio"] is None or math.isfinite(c["null_ratio"]) for c in columns)
    else:
        assert response.json()["errors"][0]["path"] == "/file"


def test_every_json_column_of_the_project_uses_the_safe_encoder():
    assert check_json_fields_are_safe() == []
    assert len(list(_project_json_fields())) >= 20  # the check really looked at the models


def _project_json_fields():
    from django.apps import apps

    for model in apps.get_models():
        if model.__module__.split(".")[0] in {"recipes", "runs", "models_registry", "monitoring"}:
            for field in model._meta.local_fields:
                if isinstance(field, models.JSONField):
                    assert isinstance(field, JSONField) or issubclass(field.encoder, SafeJSONEncoder)
                    yield field


@isolate_apps("runs")
def test_the_check_names_a_plain_json_field():
    class Careless(models.Model):
        data = models.JSONField(default=dict)
        safe = JSONField(default=dict)

        class Meta:
            app_label = "runs"

        def __str__(self):
            return "careless"

    errors = unsafe_json_fields([Careless])
    assert [e.id for e in errors] == ["mlworkspace.E020"]
    assert "runs.Careless.data" in errors[0].msg
    assert isinstance(errors[0], checks.Error)


def test_the_project_field_needs_no_migration():
    name, path, args, kwargs = Run._meta.get_field("metrics_json").deconstruct()
    assert path == "django.db.models.JSONField"
    assert "encoder" not in kwargs
