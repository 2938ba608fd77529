"""HTML pages of datasets: the list with its upload form, a dataset's page (preview, schema,
profile, check against a recipe, ways to use it, its purpose: marked as its recipe's scoring
input or not) and delete.

Uploads and deletes call the same services as the API (`services.dataset_create`,
`services.dataset_delete`); the check against a recipe reuses `data.dataset_problems`, the
rule the upload and the run's quality stage apply."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from mlworkspace.errors import Conflict, DomainError, NotFound
from mlworkspace.forms import add_domain_errors
from mlworkspace.views import active_filters, is_fragment, paginate, render_page, require_perm, sort_columns
from models_registry.models import MLModel, ModelStatus
from monitoring import perms as monitoring_perms
from recipes import access
from recipes.catalog import FAMILIES
from recipes.models import Family, Recipe
from runs import perms as run_perms

from . import data as run_data
from . import dataset_files, services
from .dataset_forms import DatasetCheckForm, DatasetPurposeForm, DatasetUploadForm
from .families import get_family
from .filters import DatasetFilter
from .models import Dataset, DatasetPurpose

PREVIEW_ROWS = 20
# Models offered under "Check a model on it": the newest of the recipe, production first.
MODELS_OFFERED = 8


def visible_datasets(user):
    """Firm datasets and those of the user's clients (recipes.access, through visible_to)."""
    return Dataset.objects.visible_to(user)


def _get_dataset_for_user(user, dataset_id: str) -> Dataset:
    return get_object_or_404(visible_datasets(user).select_related("recipe", "created_by"), pk=dataset_id)


# --------------------------------------------------------------------------- list + upload


DATASET_COLUMNS = [
    ("Dataset", "name"),
    ("Rows", "rows"),
    ("Columns", ""),
    ("Recipe", "recipe"),
    ("Check at upload", ""),
    ("Used by", ""),
    ("Uploaded", "created"),
]
DATASET_ORDERINGS = {
    "name": ["name", "id"],
    "rows": ["row_count", "id"],
    "recipe": ["recipe__name", "-created_at", "id"],
    "created": ["created_at", "id"],
}


def _list_context(request: HttpRequest) -> dict:
    base = (
        visible_datasets(request.user)
        .select_related("recipe", "created_by")
        # Only runs the user may see: a firm dataset's use by another client is not counted.
        .annotate(
            run_count=Count(
                "runs", distinct=True, filter=access.client_scope(request.user, "runs__recipe__client")
            )
        )
    )
    filterset = DatasetFilter(request.GET or None, queryset=base)
    queryset = filterset.qs if filterset.is_bound and filterset.is_valid() else base
    sort, order, columns = sort_columns(request, DATASET_COLUMNS, DATASET_ORDERINGS, "-created")
    recipe_id = request.GET.get("recipe_id", "")
    return {
        "page": paginate(request, queryset.order_by(*order)),
        "columns": columns,
        "sort": sort,
        "search": request.GET.get("search", ""),
        "recipe_id": recipe_id,
        # Only recipes that have datasets: a filter option that matches nothing helps no one.
        "recipe_choices": Recipe.objects.visible_to(request.user)
        .filter(datasets__isnull=False)
        .distinct()
        .only("id", "name")
        .order_by("name", "id"),
        "filtered": active_filters(request, ["recipe_id", "search"]),
    }


@login_required
@require_http_methods(["GET", "POST"])
def dataset_list(request: HttpRequest) -> HttpResponse:
    """Every dataset (paged, filterable by recipe, searchable by name) and the upload form.

    Upload: a multipart POST (htmx, so static/js/datasets.js can show its progress); on
    success the browser goes to the new dataset's page, on an error the form comes back
    with the message next to the field."""
    can_upload = request.user.has_perm(run_perms.ADD_DATASET) or access.has_write_role_somewhere(request.user)
    status = 200
    if request.method == "POST":
        if not access.has_write_role_somewhere(request.user):
            require_perm(request, run_perms.ADD_DATASET, "upload datasets")
        form = DatasetUploadForm(request.POST, request.FILES, user=request.user)
        if form.is_valid():
            v = form.cleaned_data
            # Uploaded against a client recipe, the data is that client's: its role decides.
            require_perm(request, run_perms.ADD_DATASET, "upload datasets", obj=v["recipe"])
            try:
                dataset = services.dataset_create(
                    user=request.user, upload=v["file"], name=v["name"] or None, recipe=v["recipe"]
                )
            except DomainError as exc:
                add_domain_errors(form, exc, {"recipe_id": "recipe"})
            else:
                problems = (dataset.validation_json or {}).get("errors") or []
                note = (
                    f" It does not meet the recipe's requirements yet ({len(problems)} problems)."
                    if problems
                    else ""
                )
                if not dataset.is_ready:  # a large file: a worker profiles it
                    note = " A worker is profiling it; runs can use it once it is ready."
                messages.success(request, f"Uploaded “{dataset.name}”: {dataset.row_count} rows.{note}")
                url = reverse("pages:dataset", args=[dataset.pk])
                return HttpResponseClientRedirect(url) if is_fragment(request) else redirect(url)
        status = 400
    else:
        initial = {"recipe": request.GET["recipe_id"]} if request.GET.get("recipe_id") else None
        form = DatasetUploadForm(initial=initial, user=request.user)
    limits = {
        "bytes": settings.DATASET_MAX_BYTES,
        "rows": settings.DATASET_MAX_ROWS,
        "columns": settings.DATASET_MAX_COLUMNS,
        "inline_bytes": settings.DATASET_INLINE_PROFILE_BYTES,
    }
    context = {
        "nav": "datasets",
        "form": form,
        "can_upload": can_upload,
        "limits": limits,
        **_list_context(request),
    }
    partial = None
    if is_fragment(request):
        partial = "upload" if request.method == "POST" else "results"
    return render_page(request, "runs/datasets.html", context, partial=partial, status=status)


# --------------------------------------------------------------------------- one dataset


def _schema_roles(family: str | None) -> dict[str, str]:
    if family not in FAMILIES:
        return {}
    return {c["name"]: c.get("role", "") for c in get_family(family).SCHEMA}


def _likely_family(columns: list[dict]) -> tuple[str | None, int]:
    """The family whose schema shares the most column names with the data (for the roles
    of a dataset uploaded without a recipe), and how many it shares."""
    names = {c["name"] for c in columns}
    best, best_count = None, 0
    for family in FAMILIES:
        count = len(names & set(_schema_roles(family)))
        if count > best_count:
            best, best_count = family, count
    return best, best_count


def schema_rows(columns: list[dict], recipe: Recipe | None) -> tuple[list[dict], dict]:
    """The schema table: each column's inferred type and profile, its role in the family's
    data and why the recipe requires it; plus where the roles come from."""
    if recipe is not None:
        family, source = recipe.model_family, {"recipe": recipe}
        version = recipe.current_version
        required = run_data.required_columns(version.manifest if version else {}, family)
    else:
        family, matched = _likely_family(columns)
        source = {"family": Family(family).label if family else None, "matched": matched}
        required = {}
    roles = _schema_roles(family)
    rows = [
        {**c, "role": roles.get(c["name"], ""), "required_by": ", ".join(required.get(c["name"], []))}
        for c in columns
    ]
    return rows, source


def _preview(dataset: Dataset) -> dict:
    try:
        frame = dataset_files.read_head(dataset, PREVIEW_ROWS)
    except (ValueError, NotImplementedError) as exc:
        return {"preview_error": str(exc)}
    except (NotFound, Conflict) as exc:
        return {"preview_error": exc.detail}
    frame = frame.astype(object).where(frame.notna(), None)
    return {"preview_columns": [str(c) for c in frame.columns], "preview_rows": frame.values.tolist()}


def _check(dataset: Dataset, recipe: Recipe) -> dict:
    """The dataset against the recipe's newest version: the same checks as the upload and
    the run's quality stage, in words. The web process reads at most DATASET_WEB_CHECK_ROWS
    rows (dataset_files.read_spread); on a larger dataset the null ratios, ranges and history
    come from its profile of every row too, and ``scope`` says which rows were checked."""
    version = recipe.current_version
    manifest = version.manifest if version else {}
    if not dataset.is_ready:  # not loaded in the web process before a worker profiled it
        problem = "it is still being profiled" if dataset.status == "processing" else dataset.error
        return {"recipe": recipe, "version": version, "problems": [problem], "readable": False}
    try:
        part = dataset_files.read_spread(dataset, settings.DATASET_WEB_CHECK_ROWS)
    except (ValueError, NotImplementedError) as exc:
        return {"recipe": recipe, "version": version, "problems": [str(exc)], "readable": False}
    except (NotFound, Conflict) as exc:
        return {"recipe": recipe, "version": version, "problems": [exc.detail], "readable": False}
    problems = run_data.dataset_problems(
        part.frame,
        dataset.columns_json,
        manifest,
        recipe.model_family,
        table_rows=None if part.whole else part.table_rows,
    )
    scope = None
    if not part.whole:
        scope = f"checked {len(part.frame):,} of {part.table_rows:,} rows ({part.how})"
    return {"recipe": recipe, "version": version, "problems": problems, "readable": True, "scope": scope}


def _models_for(recipe: Recipe | None, user) -> list[MLModel]:
    """Trained models a monitoring check could score this dataset with."""
    models = MLModel.objects.visible_to(user).exclude(status=ModelStatus.ARCHIVED)
    if recipe is not None:
        models = models.filter(recipe_id=recipe.pk)
    rank = {ModelStatus.PRODUCTION: 0, ModelStatus.STAGING: 1}
    found = [
        m
        for m in models.select_related("recipe").only(
            "id", "name", "status", "artifacts_json", "recipe__id", "recipe__name"
        )[:50]
        if (m.artifacts_json or {}).get("model")
    ]
    found.sort(key=lambda m: rank.get(m.status, 2))
    return found[:MODELS_OFFERED]


def _validation_recipe(dataset: Dataset, recipe_id: str | None) -> Recipe | None:
    """The recipe the upload was checked against (the dataset's own, unless it was removed)."""
    if not recipe_id:
        return None
    if recipe_id == dataset.recipe_id:
        return dataset.recipe
    return Recipe.objects.filter(pk=recipe_id).only("id", "name").first()


def _can_change(user, dataset: Dataset, perm: str) -> bool:
    """The one access rule: a client's dataset needs a write role in it, a firm one `perm`."""
    return access.can_write(user, dataset) if access.is_client_object(dataset) else user.has_perm(perm)


def _purpose_context(user, dataset: Dataset) -> dict:
    return {
        "dataset": dataset,
        "is_scoring": dataset.purpose == DatasetPurpose.SCORING,
        "can_change_purpose": _can_change(user, dataset, run_perms.CHANGE_DATASET),
    }


def _set_purpose(request: HttpRequest, dataset: Dataset) -> HttpResponse:
    """POST on the dataset's page: mark it as its recipe's scoring input, or back as training
    data (services.dataset_set_purpose, as the API). HTMX gets the purpose section back;
    a plain form post goes back to the page."""
    require_perm(request, run_perms.CHANGE_DATASET, "change a dataset's purpose", obj=dataset)
    form = DatasetPurposeForm(request.POST)
    if form.is_valid():
        try:
            dataset = services.dataset_set_purpose(
                dataset=dataset, user=request.user, purpose=form.cleaned_data["purpose"]
            )
        except DomainError as exc:
            add_domain_errors(form, exc)
    error = " ".join(message for messages_ in form.errors.values() for message in messages_)
    if is_fragment(request):
        context = {**_purpose_context(request.user, dataset), "purpose_error": error}
        return render_page(
            request, "runs/dataset_detail.html", context, partial="purpose", status=400 if error else 200
        )
    if error:
        messages.error(request, f"The purpose was not changed: {error}")
    elif dataset.purpose == DatasetPurpose.SCORING:
        messages.success(request, f"“{dataset.name}” is now the scoring input of {dataset.recipe.name}.")
    else:
        messages.success(request, f"“{dataset.name}” is no longer a scoring input.")
    return redirect("pages:dataset", dataset_id=dataset.pk)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_detail(request: HttpRequest, dataset_id: str) -> HttpResponse:
    """Preview, schema with roles and profile, the upload's check, a check against any
    recipe (`?recipe=<id>`, its own fragment), and links into the run and check forms.
    POST: its purpose (the purpose form)."""
    dataset = _get_dataset_for_user(request.user, dataset_id)
    if request.method == "POST":
        return _set_purpose(request, dataset)
    check_form = DatasetCheckForm(
        request.GET if "recipe" in request.GET else None,
        user=request.user,
        initial={"recipe": dataset.recipe_id},
    )
    check = _check(dataset, check_form.cleaned_data["recipe"]) if check_form.is_valid() else None
    status = 400 if check_form.is_bound and not check_form.is_valid() else 200
    checked_recipe = check["recipe"] if check else None
    # The run and check forms offer a dataset to its own recipe's runs and models (or to all,
    # when it has none): the links go where the dataset will be accepted.
    context_recipe = dataset.recipe or checked_recipe
    use = {
        "recipe": context_recipe,
        "run_url": reverse("pages:run-new")
        + f"?dataset={dataset.pk}"
        + (f"&recipe={context_recipe.pk}" if context_recipe else ""),
        "models": _models_for(context_recipe, request.user),
    }
    context = {
        **_purpose_context(request.user, dataset),
        "check_form": check_form,
        "check": check,
        "use": use,
        "can_run": request.user.has_perm(run_perms.ADD_RUN),
        "can_check": request.user.has_perm(monitoring_perms.RUN_CHECK),
    }
    if is_fragment(request) and request.htmx.target == "check":
        context["fragment"] = True  # the "Use this dataset" links come along (out of band)
        return render_page(request, "runs/dataset_detail.html", context, partial="check", status=status)
    schema, roles_from = schema_rows(dataset.columns_json or [], checked_recipe or dataset.recipe)
    usage = services.dataset_usage(dataset, request.user)
    validation = dataset.validation_json or {}
    context.update(
        {
            "nav": "datasets",
            "schema": schema,
            "roles_from": roles_from,
            "validation": validation,
            "validation_recipe": _validation_recipe(dataset, validation.get("recipe_id")),
            "usage": usage,
            "runs": list(
                dataset.runs.visible_to(request.user)
                .select_related("recipe")
                .only("id", "run_type", "status", "created_at", "recipe__id", "recipe__name")[:10]
            ),
            "can_delete": _can_change(request.user, dataset, run_perms.DELETE_DATASET),
            **_preview(dataset),
        }
    )
    return render_page(request, "runs/dataset_detail.html", context, status=status)


@login_required
@require_POST
def dataset_delete(request: HttpRequest, dataset_id: str) -> HttpResponse:
    """Delete an unused dataset (the page asks first); refused with the reason when used."""
    dataset = _get_dataset_for_user(request.user, dataset_id)
    require_perm(request, run_perms.DELETE_DATASET, "delete datasets", obj=dataset)
    try:
        services.dataset_delete(dataset=dataset, user=request.user)
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect("pages:dataset", dataset_id=dataset_id)
    messages.success(request, f"Deleted dataset “{dataset.name}” and its file.")
    return redirect("pages:datasets")
