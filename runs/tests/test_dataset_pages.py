"""The Datasets pages: upload (CSV and Parquet, with a form error for bad files), the list with
its recipe filter and pager, a dataset's preview / schema / profile, the check against a
recipe in words, delete (refused while used, after a confirmation when unused), 404s, and
the "use this dataset" links into the run form and the model's check form."""

import io
from pathlib import Path

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from monitoring.models import MonitorSnapshot
from recipes.models import Recipe
from runs.families import get_family
from runs.models import Dataset
from runs.services import dataset_create, run_start
from runs.tests.factories import register

pytestmark = pytest.mark.django_db

LIST = "/model-development/datasets"
HTMX = {"HTTP_HX_REQUEST": "true"}


def page(dataset_id: str, suffix: str = "") -> str:
    return f"{LIST}/{dataset_id}{suffix}"


def pricing_frame(rows: int = 12, *, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows with every column of the pricing family's schema (values made up, plausible)."""
    data = {
        "product_id": [f"P{i % 4}" for i in range(rows)],
        "store_id": [f"S{i // 4}" for i in range(rows)],
        "week": pd.date_range("2026-01-05", periods=rows, freq="7D").strftime("%Y-%m-%d"),
        "segment": ["snacks"] * rows,
        "price": [2.0 + 0.1 * i for i in range(rows)],
        "regular_price": [2.5] * rows,
        "unit_cost": [1.0] * rows,
        "promo": [i % 2 for i in range(rows)],
        "units": [100 - i for i in range(rows)],
    }
    assert set(data) == {c["name"] for c in get_family("pricing").SCHEMA}
    return pd.DataFrame(data).drop(columns=list(drop))


def csv_upload(frame: pd.DataFrame, name: str = "sales.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, frame.to_csv(index=False).encode(), content_type="text/csv")


def parquet_upload(frame: pd.DataFrame, name: str = "sales.parquet") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/octet-stream")


def uploaded(user, frame=None, name="sales.csv", recipe_id=None) -> Dataset:
    recipe = Recipe.objects.get(pk=recipe_id) if recipe_id else None
    return dataset_create(
        user=user, upload=csv_upload(pricing_frame() if frame is None else frame, name), recipe=recipe
    )


# --------------------------------------------------------------------------- upload


def test_upload_csv_goes_to_the_dataset_page_with_its_check(as_user, baselines):
    response = as_user.post(
        LIST, {"file": csv_upload(pricing_frame(30)), "name": "Q1 sales", "recipe": "recipe_pricing_base"}
    )
    dataset = Dataset.objects.get()
    assert response.status_code == 302 and response["Location"] == page(dataset.pk)
    assert (dataset.name, dataset.format, dataset.row_count, dataset.recipe_id) == (
        "Q1 sales",
        "csv",
        30,
        "recipe_pricing_base",
    )
    # 30 weeks of history is less than the baseline's 52: the upload's check says so.
    assert any("min_history" in e for e in dataset.validation_json["errors"])
    detail = as_user.get(response["Location"])
    body = detail.content.decode()
    assert detail.status_code == 200 and "Q1 sales" in body
    assert "min_history needs 52 week(s)" in body  # "Checked at upload", in words


def test_upload_parquet_through_htmx_redirects_the_browser(as_user, baselines):
    frame = pricing_frame(8)
    response = as_user.post(LIST, {"file": parquet_upload(frame)}, **HTMX)
    dataset = Dataset.objects.get()
    assert response.status_code == 200 and response["HX-Redirect"] == page(dataset.pk)
    assert (dataset.format, dataset.row_count, dataset.name) == ("parquet", 8, "sales")
    assert dataset.validation_json["valid"] is None  # no recipe given: not checked
    price = next(c for c in dataset.columns_json if c["name"] == "price")
    assert price["dtype"] == "float" and price["min"] == 2.0 and price["max"] == pytest.approx(2.7)
    assert next(c for c in dataset.columns_json if c["name"] == "product_id")["distinct"] == 4


@pytest.mark.parametrize(
    "upload, message",
    [
        (SimpleUploadedFile("notes.txt", b"a,b\n1,2\n"), "must be a .csv or .parquet file"),
        (SimpleUploadedFile("broken.parquet", b"this is not parquet"), "could not read the file as PARQUET"),
        (SimpleUploadedFile("empty.csv", b""), "The submitted file is empty"),
        (SimpleUploadedFile("blank.csv", b"\n\n"), "could not read the file as CSV"),
    ],
)
def test_a_bad_upload_is_a_form_error_not_a_500(as_user, baselines, settings, upload, message):
    response = as_user.post(LIST, {"file": upload}, **HTMX)
    assert response.status_code == 400
    body = response.content.decode()
    assert 'class="field-error"' in body and message in body
    assert "<html" not in body  # only the form is swapped
    assert not Dataset.objects.exists()
    assert not list((Path(settings.MEDIA_ROOT) / "datasets").glob("*"))  # no orphan file


def test_a_too_large_upload_is_a_form_error(as_user, baselines, settings):
    settings.DATASET_MAX_BYTES = 50
    response = as_user.post(LIST, {"file": csv_upload(pricing_frame())}, **HTMX)
    assert response.status_code == 400
    assert (
        "too large" in response.context["form"].errors["file"][0]
        and "the limit is 50" in response.content.decode()
    )
    assert not Dataset.objects.exists()


def test_upload_without_a_file_names_the_field(as_user, baselines):
    response = as_user.post(LIST, {"name": "nothing"})
    assert response.status_code == 400
    assert response.context["form"].errors["file"]


def test_upload_is_refused_without_permission(as_viewer, baselines):
    page_ = as_viewer.get(LIST)
    assert page_.status_code == 200 and "needs the runs.add_dataset permission" in page_.content.decode()
    assert as_viewer.post(LIST, {"file": csv_upload(pricing_frame())}).status_code == 403
    assert not Dataset.objects.exists()


def test_anonymous_users_are_sent_to_log_in(client):
    assert client.get(LIST).status_code == 302


# --------------------------------------------------------------------------- list


def test_list_filters_by_recipe_searches_and_pages(as_user, baselines, user):
    pricing = uploaded(user, name="pricing.csv", recipe_id="recipe_pricing_base")
    loose = uploaded(user, name="loose.csv")
    response = as_user.get(LIST)
    assert response.status_code == 200
    assert [d.pk for d in response.context["page"].object_list] == [loose.pk, pricing.pk]
    body = response.content.decode()
    assert 'href="/model-development/datasets"' in body  # the sidebar links the page
    by_recipe = as_user.get(LIST, {"recipe_id": "recipe_pricing_base"}, **HTMX, HTTP_HX_TARGET="results")
    assert [d.pk for d in by_recipe.context["page"].object_list] == [pricing.pk]
    assert b"<html" not in by_recipe.content
    assert [d.pk for d in as_user.get(LIST, {"search": "loo"}).context["page"].object_list] == [loose.pk]
    none = as_user.get(LIST, {"search": "nothing like it"})
    assert "No dataset matches these filters" in none.content.decode()
    run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), dataset=pricing)
    row = as_user.get(LIST).content.decode()
    assert "1 run" in row and "unused" in row


def test_list_pages_and_keeps_its_query_count(as_user, baselines, user, django_assert_max_num_queries):
    for i in range(27):
        uploaded(user, name=f"part{i}.csv", recipe_id="recipe_pricing_base")
    with django_assert_max_num_queries(9):
        first = as_user.get(LIST)
    assert first.context["page"].paginator.num_pages == 2
    second = as_user.get(LIST, {"page": 2, "sort": "name"})
    assert len(second.context["page"].object_list) == 2
    assert [d.name for d in second.context["page"].object_list] == ["part8", "part9"]


def test_empty_list_says_what_datasets_are_for(as_user, baselines):
    assert "No datasets yet" in as_user.get(LIST).content.decode()


# --------------------------------------------------------------------------- one dataset


def test_dataset_page_shows_first_rows_schema_roles_and_profile(as_user, baselines, user):
    frame = pricing_frame(30)
    frame.loc[3, "unit_cost"] = None
    dataset = uploaded(user, frame=frame, recipe_id="recipe_pricing_base")
    response = as_user.get(page(dataset.pk))
    assert response.status_code == 200
    assert response.context["preview_columns"] == list(frame.columns)
    assert len(response.context["preview_rows"]) == 20  # the first rows, not all 30
    assert response.context["preview_rows"][0][0] == "P0"
    schema = {row["name"]: row for row in response.context["schema"]}
    assert schema["week"]["role"] == "time" and schema["units"]["role"] == "label"
    # CSV has no date type: ISO date text is inferred as a date, with its span.
    assert (schema["week"]["dtype"], schema["week"]["min"]) == ("date", "2026-01-05")
    assert schema["week"]["max"] == frame["week"].max()
    assert schema["product_id"]["dtype"] == "string" and "min" not in schema["product_id"]
    assert schema["units"]["required_by"] == "label"
    assert "grain" in schema["product_id"]["required_by"]
    assert schema["unit_cost"]["null_ratio"] == pytest.approx(1 / 30, abs=1e-6)
    assert schema["price"]["dtype"] == "float" and schema["price"]["mean"] == pytest.approx(
        frame["price"].mean()
    )
    body = response.content.decode()
    assert 'id="preview-table"' in body and 'id="schema-table"' in body


def test_roles_of_a_dataset_without_recipe_come_from_the_closest_family(as_user, baselines, user):
    dataset = uploaded(user, frame=pricing_frame().assign(extra=1))
    response = as_user.get(page(dataset.pk))
    assert response.context["roles_from"] == {"family": "Pricing", "matched": 9}
    schema = {row["name"]: row for row in response.context["schema"]}
    assert schema["price"]["role"] == "feature" and schema["extra"]["role"] == ""


def test_parquet_preview_reads_the_first_rows(as_user, baselines, user):
    dataset = dataset_create(user=user, upload=parquet_upload(pricing_frame(25)))
    response = as_user.get(page(dataset.pk))
    assert len(response.context["preview_rows"]) == 20
    assert response.context["preview_columns"][0] == "product_id"


def test_a_missing_file_is_said_not_a_500(as_user, baselines, user):
    dataset = uploaded(user)
    Path(dataset.file.path).unlink()
    response = as_user.get(page(dataset.pk))
    assert response.status_code == 200 and "cannot be read any more" in response.content.decode()


def test_unknown_dataset_ids_are_404(as_user, baselines):
    assert as_user.get(page("ds_nope")).status_code == 404
    assert as_user.post(page("ds_nope", "/delete")).status_code == 404


# --------------------------------------------------------------------------- check against a recipe


def test_check_against_a_recipe_lists_the_problems_in_words(as_user, baselines, user):
    frame = pricing_frame(20, drop=("units", "unit_cost"))
    frame.loc[0, "price"] = -1
    dataset = uploaded(user, frame=frame)
    response = as_user.get(
        page(dataset.pk), {"recipe": "recipe_pricing_base"}, **HTMX, HTTP_HX_TARGET="check"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and 'data-check-result="fail"' in body
    assert "column &#x27;units&#x27; is missing (required by label)" in body
    assert "column &#x27;unit_cost&#x27; is missing (required by feature set &#x27;cost&#x27;)" in body
    assert "column &#x27;price&#x27; has 1 values below 0.01" in body
    assert "min_history needs 52 week(s)" in body
    # The same words the upload and the run's quality stage use: one rule.
    assert "column 'units' is missing (required by label)" in response.context["check"]["problems"]
    # The "Use this dataset" links follow the checked recipe: swapped out of band with the
    # result, and on the full page (where they appear once).
    assert 'id="use" hx-swap-oob="true"' in body and "recipe=recipe_pricing_base" in body
    full = as_user.get(page(dataset.pk), {"recipe": "recipe_pricing_base"}).content.decode()
    assert full.count('id="use"') == 1 and "hx-swap-oob" not in full
    assert "recipe=recipe_pricing_base" in full


def test_check_passes_for_data_that_meets_the_requirements(as_user, baselines, user):
    frame = get_family("location_scoring").generate(1500, 3)
    dataset = uploaded(user, frame=frame)
    response = as_user.get(page(dataset.pk), {"recipe": "recipe_location_base"})
    assert response.status_code == 200
    assert response.context["check"]["problems"] == []
    assert 'data-check-result="pass"' in response.content.decode()


def test_check_against_an_unknown_recipe_is_a_form_error(as_user, baselines, user):
    dataset = uploaded(user)
    response = as_user.get(page(dataset.pk), {"recipe": "recipe_nope"}, **HTMX, HTTP_HX_TARGET="check")
    assert response.status_code == 400 and 'class="field-error"' in response.content.decode()


# --------------------------------------------------------------------------- delete


def test_delete_of_an_unused_dataset_asks_first_then_removes_row_and_file(
    as_user, baselines, user, django_capture_on_commit_callbacks
):
    dataset = uploaded(user)
    path = Path(dataset.file.path)
    detail = as_user.get(page(dataset.pk)).content.decode()
    assert "data-confirm=" in detail and "cannot be undone" in detail  # static/js/app.js asks
    with django_capture_on_commit_callbacks(execute=True):
        response = as_user.post(page(dataset.pk, "/delete"), follow=True)
    assert response.redirect_chain[-1][0] == LIST
    assert "Deleted dataset" in response.content.decode()
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not path.exists()


def test_delete_is_refused_while_a_run_uses_the_dataset(as_user, baselines, user):
    dataset = uploaded(user, recipe_id="recipe_pricing_base")
    run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), dataset=dataset)
    detail = as_user.get(page(dataset.pk)).content.decode()
    assert "Kept: used by 1 run" in detail and "Delete dataset" not in detail
    response = as_user.post(page(dataset.pk, "/delete"), follow=True)
    body = response.content.decode()
    assert response.redirect_chain[-1][0] == page(dataset.pk)
    assert "is used by 1 run" in body and "Only unused datasets can be deleted" in body
    assert Dataset.objects.filter(pk=dataset.pk).exists() and Path(dataset.file.path).exists()


def test_delete_is_refused_while_a_monitoring_snapshot_uses_the_dataset(as_user, baselines, user):
    dataset = uploaded(user, recipe_id="recipe_pricing_base")
    model = register(user)
    MonitorSnapshot.objects.create(id="snap_test", model=model, captured_at=timezone.now(), dataset=dataset)
    response = as_user.post(page(dataset.pk, "/delete"), follow=True)
    assert "is used by 1 monitor snapshot" in response.content.decode()
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_delete_needs_the_permission(as_viewer, baselines, user):
    dataset = uploaded(user)
    assert "Delete dataset" not in as_viewer.get(page(dataset.pk)).content.decode()
    assert as_viewer.post(page(dataset.pk, "/delete")).status_code == 403
    assert Dataset.objects.filter(pk=dataset.pk).exists()


# --------------------------------------------------------------------------- use this dataset


def test_use_this_dataset_preselects_it_in_the_run_form(as_user, baselines, user):
    dataset = uploaded(user, recipe_id="recipe_pricing_base")
    detail = as_user.get(page(dataset.pk)).content.decode()
    assert f"/model-development/runs/new?dataset={dataset.pk}&amp;recipe=recipe_pricing_base" in detail
    form = as_user.get("/model-development/runs/new", {"dataset": dataset.pk})
    assert form.status_code == 200
    assert form.context["form"]["recipe"].value() == "recipe_pricing_base"  # from the dataset
    assert form.context["form"]["dataset"].value() == dataset.pk
    assert f'<option value="{dataset.pk}" selected>' in form.content.decode()


def test_use_this_dataset_without_recipe_asks_for_one(as_user, baselines, user):
    dataset = uploaded(user)
    detail = as_user.get(page(dataset.pk)).content.decode()
    assert 'id="use-in-run"' in detail and f'name="dataset" value="{dataset.pk}"' in detail
    form = as_user.get(
        "/model-development/runs/new", {"dataset": dataset.pk, "recipe": "recipe_pricing_base"}
    )
    assert f'<option value="{dataset.pk}" selected>' in form.content.decode()


def test_use_this_dataset_preselects_it_in_the_models_check_form(as_user, baselines, user):
    from runs.tests.factories import trained_model

    model = trained_model(user, rows=3000)
    dataset = uploaded(user, recipe_id="recipe_pricing_base")
    detail = as_user.get(page(dataset.pk)).content.decode()
    link = f"/model-development/models/{model.pk}?tab=monitoring&amp;dataset={dataset.pk}"
    assert link in detail
    check = as_user.get(f"/model-development/models/{model.pk}", {"tab": "monitoring", "dataset": dataset.pk})
    form = check.context["check_form"]
    assert form["source"].value() == "dataset" and form["dataset"].value() == dataset.pk
    assert f'<option value="{dataset.pk}" selected>' in check.content.decode()


def test_dataset_page_query_count_does_not_grow_with_runs(
    as_user, baselines, user, django_assert_max_num_queries
):
    dataset = uploaded(user, recipe_id="recipe_pricing_base")
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    for _ in range(12):
        run_start(user=user, recipe=recipe, dataset=dataset)
    register(user)
    # 12: a constant, one of them the usage count scoped to what the user may see.
    with django_assert_max_num_queries(12):
        response = as_user.get(page(dataset.pk))
    assert "Kept: used by 12 runs" in response.content.decode()
    assert len(response.context["runs"]) == 10


def test_admin_deletes_through_the_service(client, baselines, user, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root", password="pw-root-1")
    client.force_login(admin)
    by_run = uploaded(user, name="by_run.csv", recipe_id="recipe_pricing_base")
    run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), dataset=by_run)
    assert client.post(f"/admin/runs/dataset/{by_run.pk}/delete/", {"post": "yes"}).status_code == 403
    # A snapshot's link would not stop Django's own delete (SET_NULL): the service does.
    by_snapshot = uploaded(user, name="by_snapshot.csv", recipe_id="recipe_pricing_base")
    MonitorSnapshot.objects.create(
        id="snap_admin", model=register(user), captured_at=timezone.now(), dataset=by_snapshot
    )
    unused = uploaded(user, name="unused.csv")

    def bulk_delete(*datasets):
        return client.post(
            "/admin/runs/dataset/",
            {"action": "delete_selected", "_selected_action": [d.pk for d in datasets], "post": "yes"},
        )

    assert bulk_delete(by_snapshot, unused).status_code == 403
    assert Dataset.objects.count() == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert bulk_delete(unused).status_code == 302
    assert set(Dataset.objects.values_list("pk", flat=True)) == {by_run.pk, by_snapshot.pk}
    assert not Path(unused.file.path).exists()  # the service removed the file too


def test_use_links_stay_with_the_datasets_own_recipe_when_checked_against_another(as_user, baselines, user):
    dataset = uploaded(user, recipe_id="recipe_pricing_base")
    response = as_user.get(page(dataset.pk), {"recipe": "recipe_location_base"})
    assert response.context["use"]["recipe"].pk == "recipe_pricing_base"  # the forms accept it there
    assert response.context["roles_from"]["recipe"].pk == "recipe_location_base"  # roles as checked
    assert response.context["check"]["problems"]
