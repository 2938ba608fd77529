"""The audit trail: every write service records exactly one event with the right before/after,
inside its transaction; events are append-only at every layer."""

from __future__ import annotations

import copy

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError, connection, transaction

from audit import services as audit
from audit.models import AppendOnlyError, AuditEvent
from mlworkspace.errors import Conflict
from models_registry import services as model_services
from models_registry.models import MLModel
from monitoring import services as monitoring_services
from recipes import client_services
from recipes import services as recipe_services
from recipes.models import Recipe
from recipes.tests.factories import manifest_for
from runs import services as run_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def base(baselines):
    return Recipe.objects.get(pk="recipe_pricing_base")


@pytest.fixture
def industry(base, user):
    return recipe_services.recipe_clone(source=base, user=user, name="Retail pricing")


def _model(user, base, name="Pricing model", trained=True):
    model = model_services.model_register(
        user=user, name=name, recipe=base, recipe_version=base.current_version
    )
    if trained:  # promotion needs an artifact; no training needed to audit the move
        MLModel.objects.filter(pk=model.pk).update(artifacts_json={"model": {"path": "model.pkl"}})
        model.refresh_from_db()
    return model


def _run(user, base, **kwargs):
    return run_services.run_start(user=user, recipe=base, executor="external", **kwargs)


def _csv(name="sales.csv"):
    return SimpleUploadedFile(name, b"week,price,units\n2024-01-01,1.5,10\n2024-01-08,1.6,9\n")


# Each case: set-up (not counted) -> the audited call -> the event it must leave.
# (action, object_type, expected subset of changes, expected subset of detail)


def case_recipe_create(ctx):
    recipe = recipe_services.recipe_create(
        user=ctx["user"],
        name="Retail pricing",
        model_family="pricing",
        level="industry",
        parent=ctx["base"],
        manifest=manifest_for("pricing", "industry"),
        tags=["retail"],
    )
    return (
        recipe,
        "recipe.create",
        {
            "name": [None, "Retail pricing"],
            "level": [None, "industry"],
            "parent_id": [None, "recipe_pricing_base"],
            "tags": [None, ["retail"]],
        },
        {},
    )


def case_recipe_clone(ctx):
    recipe = recipe_services.recipe_clone(source=ctx["base"], user=ctx["user"], name="Clone")
    return recipe, "recipe.clone", {"name": [None, "Clone"], "parent_id": [None, "recipe_pricing_base"]}, {}


def case_recipe_update(ctx):
    recipe = ctx["industry"]()
    old, old_tags = recipe.description, recipe.tags
    recipe = recipe_services.recipe_update(
        recipe=recipe, user=ctx["user"], description="Now for retail", tags=["x"]
    )
    return recipe, "recipe.update", {"description": [old, "Now for retail"], "tags": [old_tags, ["x"]]}, {}


def case_recipe_deprecate(ctx):
    recipe = ctx["industry"]()
    recipe = recipe_services.recipe_update(recipe=recipe, user=ctx["user"], status="deprecated")
    return recipe, "recipe.status", {"status": ["draft", "deprecated"]}, {}


def case_version_create(ctx):
    recipe = ctx["industry"]()
    manifest = copy.deepcopy(recipe.current_version.manifest)
    manifest["monitoring"]["drift"]["threshold"] = 0.15
    version = recipe_services.version_create(recipe=recipe, user=ctx["user"], manifest=manifest)
    return (
        version,
        "version.create",
        {
            "version": [None, "1.1.0"],  # a threshold change is a minor bump
            "manifest/monitoring/drift/threshold": [0.2, 0.15],
        },
        {"previous_version": "1.0.0"},
    )


def case_version_approve(ctx):
    version = ctx["industry"]().current_version
    version = recipe_services.version_approve(version=version, user=ctx["lead"], override_reason="signed off")
    return (
        version,
        "version.approve",
        {
            "approved_by_id": [None, ctx["lead"].pk],
            "approval_override_reason": ["", "signed off"],
            "recipe_status": ["draft", "approved"],
        },
        {"gate": "overridden", "passed": False},
    )


def case_recipe_rebase(ctx):
    industry, base = ctx["industry"](), ctx["base"]
    manifest = copy.deepcopy(base.current_version.manifest)
    manifest["monitoring"]["drift"]["threshold"] = 0.12
    upstream = recipe_services.version_create(recipe=base, user=ctx["user"], manifest=manifest)
    recipe_services.version_approve(version=upstream, user=ctx["lead"], override_reason="upstream")
    ctx["mark"]()
    version = recipe_services.recipe_rebase(recipe=industry, user=ctx["user"])
    return (
        version,
        "recipe.rebase",
        {
            "base_version_id": [None, upstream.pk],
            "manifest/monitoring/drift/threshold": [0.2, 0.12],
        },
        {},
    )


def case_model_register(ctx):
    model = model_services.model_register(
        user=ctx["user"], name="Pricing model", recipe=ctx["base"], recipe_version=ctx["base"].current_version
    )
    return (
        model,
        "model.register",
        {
            "name": [None, "Pricing model"],
            "status": [None, "registered"],
            "recipe_version_id": [None, ctx["base"].current_version.pk],
        },
        {},
    )


def case_model_status(ctx):
    model = _model(ctx["user"], ctx["base"])
    ctx["mark"]()
    result = model_services.model_set_status(model=model, user=ctx["lead"], status="staging")
    return result["model"], "model.status", {"status": ["registered", "staging"]}, {"replaced": []}


def case_model_update(ctx):
    model = _model(ctx["user"], ctx["base"])
    ctx["mark"]()
    model = model_services.model_update(model=model, user=ctx["user"], description="weekly prices")
    return model, "model.update", {"description": ["", "weekly prices"]}, {}


def case_run_start(ctx):
    run = _run(ctx["user"], ctx["base"])
    return run, "run.start", {"status": [None, "queued"], "executor": [None, "external"]}, {}


def case_run_cancel(ctx):
    run = _run(ctx["user"], ctx["base"])
    ctx["mark"]()
    run = run_services.run_cancel(run=run, user=ctx["user"])
    return run, "run.cancel", {"status": ["queued", "cancelled"], "cancel_requested": [False, True]}, {}


def case_run_retry(ctx):
    first = run_services.run_cancel(run=_run(ctx["user"], ctx["base"]), user=ctx["user"])
    ctx["mark"]()
    run = run_services.run_retry(run=first, user=ctx["user"])
    return run, "run.retry", {"retry_of_id": [None, first.pk], "status": [None, "queued"]}, {}


def case_run_report(ctx):
    run = _run(ctx["user"], ctx["base"])
    ctx["mark"]()
    run = run_services.run_report(run=run, user=ctx["user"], status="running")
    return run, "run.report", {"status": ["queued", "running"]}, {}


def case_dataset_upload(ctx):
    dataset = run_services.dataset_create(user=ctx["user"], upload=_csv(), name="Sales")
    return dataset, "dataset.upload", {"name": [None, "Sales"], "format": [None, "csv"]}, {}


def case_dataset_delete(ctx):
    dataset = run_services.dataset_create(user=ctx["user"], upload=_csv(), name="Sales")
    dataset_id = dataset.pk
    ctx["mark"]()
    run_services.dataset_delete(dataset=dataset, user=ctx["user"])
    dataset.pk = dataset_id  # (the deleted row's id, for the comparison below)
    return dataset, "dataset.delete", {"name": ["Sales", None], "format": ["csv", None]}, {}


def case_monitoring_check(ctx):
    model = _model(ctx["user"], ctx["base"])
    ctx["mark"]()
    snapshot = monitoring_services.snapshot_record(model=model, performance={"MAPE": 0.1})
    return model, "monitoring.check", {}, {"snapshot_id": snapshot.pk, "source": "external"}


def case_client_create(ctx):
    client = client_services.client_create(user=ctx["user"], name="Acme")
    return client, "client.create", {"name": [None, "Acme"], "slug": [None, "acme"]}, {}


def case_member_add(ctx):
    client = client_services.client_create(user=ctx["user"], name="Acme")
    ctx["mark"]()
    client_services.membership_set(user=ctx["user"], client=client, member=ctx["lead"], role="viewer")
    return client, "client.member_add", {"role": [None, "viewer"]}, {"username": "lead"}


def case_member_role(ctx):
    client = client_services.client_create(user=ctx["user"], name="Acme")
    client_services.membership_set(user=ctx["user"], client=client, member=ctx["lead"], role="viewer")
    ctx["mark"]()
    client_services.membership_set(user=ctx["user"], client=client, member=ctx["lead"], role="lead")
    return client, "client.member_role", {"role": ["viewer", "lead"]}, {"username": "lead"}


def case_member_remove(ctx):
    client = client_services.client_create(user=ctx["user"], name="Acme")
    client_services.membership_set(user=ctx["user"], client=client, member=ctx["lead"], role="viewer")
    ctx["mark"]()
    client_services.membership_remove(user=ctx["user"], client=client, member=ctx["lead"])
    return client, "client.member_remove", {"role": ["viewer", None]}, {"username": "lead"}


CASES = [
    case_recipe_create,
    case_recipe_clone,
    case_recipe_update,
    case_recipe_deprecate,
    case_version_create,
    case_version_approve,
    case_recipe_rebase,
    case_model_register,
    case_model_status,
    case_model_update,
    case_run_start,
    case_run_cancel,
    case_run_retry,
    case_run_report,
    case_dataset_upload,
    case_dataset_delete,
    case_monitoring_check,
    case_client_create,
    case_member_add,
    case_member_role,
    case_member_remove,
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.removeprefix("case_"))
def test_each_audited_action_records_one_event_with_its_changes(case, base, user, lead):
    mark = {"at": set()}

    def set_mark():
        mark["at"] = set(AuditEvent.objects.values_list("id", flat=True))

    made = {}

    def industry():
        # Set-up, not what is being tested: its own events are before the mark.
        if "industry" not in made:
            made["industry"] = recipe_services.recipe_clone(source=base, user=user, name="Retail pricing")
            set_mark()
        return made["industry"]

    set_mark()
    obj, action, expected_changes, expected_detail = case(
        {"base": base, "user": user, "lead": lead, "industry": industry, "mark": set_mark}
    )
    new = list(AuditEvent.objects.exclude(id__in=mark["at"]))
    assert [e.action for e in new] == [action]
    event = new[0]
    assert event.object_id == str(obj.pk)
    assert event.object_type == audit.object_type_of(obj)
    assert event.actor_username in ("scientist", "lead", "")
    for field, pair in expected_changes.items():
        assert event.changes.get(field) == pair, (field, event.changes)
    for key, value in expected_detail.items():
        assert event.detail.get(key) == value, (key, event.detail)
    # Only changed fields: a before/after pair never holds the same value twice.
    assert all(before != after for before, after in event.changes.values())


def test_actor_is_the_user_given_to_the_service(base, lead):
    recipe_services.recipe_update(recipe=base, user=lead, description="by the lead")
    event = AuditEvent.objects.get(action="recipe.update")
    assert (event.actor_id, event.actor_username) == (lead.pk, "lead")
    assert event.object_repr == base.name


def test_promotion_records_the_model_it_replaced_on_both_models(base, user, lead):
    old = _model(user, base, "Old")
    model_services.model_set_status(model=old, user=lead, status="staging")
    model_services.model_set_status(model=old, user=lead, status="production")
    new = _model(user, base, "New")
    model_services.model_set_status(model=new, user=lead, status="staging")
    seen = set(AuditEvent.objects.values_list("id", flat=True))
    model_services.model_set_status(model=new, user=lead, status="production")
    events = {e.object_id: e for e in AuditEvent.objects.exclude(id__in=seen)}
    assert set(events) == {old.pk, new.pk}
    assert events[new.pk].changes["status"] == ["staging", "production"]
    assert events[new.pk].detail["replaced"] == [old.pk]
    assert events[old.pk].changes["status"] == ["production", "staging"]
    assert events[old.pk].detail["replaced_by"] == new.pk


def test_approval_records_the_gate_verdict_when_it_passes_on_evidence(base, user, lead, monkeypatch):
    industry = recipe_services.recipe_clone(source=base, user=user, name="Retail pricing")
    verdict = {"passed": True, "reasons": [], "evidence": {"run_id": None, "source": "test"}}
    monkeypatch.setattr(recipe_services, "approval_gate", lambda version, run=None: dict(verdict))
    recipe_services.version_approve(version=industry.current_version, user=lead)
    event = AuditEvent.objects.get(action="version.approve")
    assert event.detail["gate"] == "passed" and event.detail["passed"] is True
    assert "approval_override_reason" not in event.changes


# --------------------------------------------------------------------------- no event without the write


def test_a_rolled_back_write_leaves_no_event(base, user):
    with pytest.raises(RuntimeError), transaction.atomic():
        recipe_services.recipe_update(recipe=base, user=user, description="never committed")
        assert AuditEvent.objects.filter(action="recipe.update").count() == 1
        raise RuntimeError("the caller fails after the service")
    assert not AuditEvent.objects.filter(action="recipe.update").exists()


@pytest.mark.parametrize(
    "call",
    [
        # Refused before anything is written.
        lambda ctx: recipe_services.recipe_update(
            recipe=ctx["industry"], user=ctx["user"], status="approved"
        ),
        lambda ctx: recipe_services.version_approve(
            version=ctx["industry"].current_version, user=ctx["user"]
        ),
        lambda ctx: model_services.model_set_status(
            model=ctx["model"], user=ctx["user"], status="production"
        ),
        lambda ctx: run_services.run_report(run=ctx["run"], user=ctx["user"], status="queued"),
    ],
    ids=["recipe-approved-by-update", "approve-without-evidence", "illegal-model-move", "illegal-run-move"],
)
def test_a_refused_write_leaves_no_event(call, base, user):
    industry = recipe_services.recipe_clone(source=base, user=user, name="Retail pricing")
    model = _model(user, base)
    model_services.model_set_status(model=model, user=user, status="staging")
    model_services.model_set_status(model=model, user=user, status="archived")
    run = run_services.run_cancel(run=_run(user, base), user=user)
    before = AuditEvent.objects.count()
    with pytest.raises(Conflict):
        call({"base": base, "user": user, "industry": industry, "model": model, "run": run})
    assert AuditEvent.objects.count() == before


def test_a_delete_refused_after_its_event_was_written_rolls_the_event_back(base, user, monkeypatch):
    """dataset_delete writes its event, then the delete meets a run started meanwhile: the
    409 rolls back the event with the delete."""
    dataset = run_services.dataset_create(user=user, upload=_csv(), name="Sales")
    run_services.run_start(user=user, recipe=base, executor="external", dataset=dataset)
    usage = iter([{}])  # the first count misses the run (it "started since")
    real = run_services.dataset_usage
    monkeypatch.setattr(
        run_services.datasets, "dataset_usage", lambda d, u=None: next(usage, None) or real(d, u)
    )
    with pytest.raises(Conflict):
        run_services.dataset_delete(dataset=dataset, user=user)
    assert not AuditEvent.objects.filter(action="dataset.delete").exists()


# --------------------------------------------------------------------------- append-only


@pytest.fixture
def event(base, user):
    recipe_services.recipe_update(recipe=base, user=user, description="audited")
    return AuditEvent.objects.get(action="recipe.update")


def test_an_event_cannot_be_saved_again(event):
    event.action = "recipe.nothing"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.save_base()  # around the model's save: the pre_save guard
    assert AuditEvent.objects.get(pk=event.pk).action == "recipe.update"


def test_an_event_cannot_be_deleted(event):
    from django.db.models.deletion import Collector

    with pytest.raises(AppendOnlyError):
        event.delete()
    collector = Collector(using="default")
    collector.collect([event])
    with pytest.raises(AppendOnlyError), transaction.atomic():
        collector.delete()  # around the model's delete: the pre_delete guard
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_the_queryset_refuses_update_and_delete(event):
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.filter(pk=event.pk, action="recipe.update").exists()


def test_the_database_refuses_an_update_from_any_client(event):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE ml_audit_event SET action = 'x' WHERE id = %s", [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "recipe.update"


def test_the_database_refuses_a_delete_on_postgresql(event):
    if connection.vendor != "postgresql":
        pytest.skip(
            "SQLite has no DELETE trigger on the audit table: Django's flush (between "
            "transactional tests, manage.py flush) empties tables with DELETE there"
        )
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM ml_audit_event WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_deleting_a_user_keeps_their_events(base, django_user_model):
    someone = django_user_model.objects.create_user("someone", password="pw-someone-1")
    recipe_services.recipe_update(recipe=base, user=someone, description="before leaving")
    someone.delete()
    event = AuditEvent.objects.get(action="recipe.update")
    assert event.actor_username == "someone"


# --------------------------------------------------------------------------- helpers


def test_long_values_are_kept_as_size_and_digest():
    value = {"text": "x" * 5000}
    kept = audit.jsonable(value)
    assert kept["summary"].endswith("characters") and len(kept["sha256"]) == 16
    assert audit.jsonable({"text": "y" * 5000}) != kept  # a change still shows


def test_changes_keep_only_differing_fields():
    assert audit.changes({"a": 1, "b": 2, "c": ""}, {"a": 1, "b": 3, "c": None}) == {"b": [2, 3]}
    assert audit.changes(None, {"a": 1, "b": ""}) == {"a": [None, 1]}
    assert audit.changes({"a": 1}, None) == {"a": [1, None]}
