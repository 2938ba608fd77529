"""The demo's building blocks: its user and clients, and DemoBuilder, whose helpers write
through the services with an explicit time (`at=`, DemoBuilder.on) and log each step."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.text import slugify

from mlworkspace.errors import Conflict
from models_registry.models import MLModel
from models_registry.services import model_register, model_set_status
from recipes import client_services
from recipes.models import Client, Level, Recipe, RecipeVersion
from recipes.services import recipe_clone, version_approve, version_create
from runs.executor import execute_run
from runs.models import Run, RunStatus, RunType
from runs.services import run_move_in_time, run_start

# The demo exists when this industry recipe (tagged "demo") does: everything is created in
# one transaction, so its presence means the whole demo is there.
MARKER_NAME = "Grocery Retail Forecasting"
DEMO_TAG = "demo"
DEMO_OVERRIDE = "Seeded demo: approved without an evidence run to keep seeding fast."
# Days of workspace history before the monitoring history begins: recipes, versions weeks
# apart, runs before the approvals they support, promotions after them (see DemoBuilder.on).
LEAD_DAYS = 130


class DemoError(RuntimeError):
    """A step of the demo did not end as planned (e.g. a training run failed)."""


def demo_exists() -> bool:
    return Recipe.objects.filter(name=MARKER_NAME, level=Level.INDUSTRY, tag_set__name=DEMO_TAG).exists()


def demo_user():
    """The superuser `admin` (setup_workspace creates it), else a `demo` user (no password)."""
    User = get_user_model()
    user = User.objects.filter(username="admin").first()
    if user is None:
        user, created = User.objects.get_or_create(username="demo")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
    return user


# The teams of two demo clients (users without a password: set one with `changepassword`);
# every other demo client has no team, so only superusers see it.
DEMO_TEAMS = {
    "FreshMart Stores": {"freshmart.lead": "lead", "freshmart.analyst": "data_scientist"},
    "VoltMart": {"voltmart.lead": "lead", "voltmart.viewer": "viewer"},
}


def demo_client(name: str, user):
    """The client a demo client recipe belongs to, named after it (created once), with its
    demo team; the demo's own user leads it unless a superuser (who sees every client)."""
    client = Client.objects.filter(slug=slugify(name)).first() or client_services.client_create(
        user=user, name=name, slug=slugify(name)
    )
    User = get_user_model()
    team = dict(DEMO_TEAMS.get(name, {}))
    for username, role in team.items():
        member, created = User.objects.get_or_create(username=username)
        if created:
            member.set_unusable_password()
            member.save(update_fields=["password"])
        client_services.membership_set(user=user, client=client, member=member, role=role)
    if user is not None and not user.is_superuser:
        client_services.membership_set(user=user, client=client, member=user, role="lead")
    return client


def with_changes(manifest: dict, change: Callable[[dict], None]) -> dict:
    out = copy.deepcopy(manifest)
    change(out)
    return out


def stage(manifest: dict, kind: str) -> dict:
    return next(s for s in manifest["pipeline"]["stages"] if s["type"] == kind)


class DemoBuilder:
    """The demo's writes, each through a service with the step's time (`on`), and its log."""

    def __init__(self, *, user, days: int, rows: int, log: Callable[[str], None]):
        self.user = user
        self.days = days
        self.rows = rows
        self.log = log
        self.started = time.monotonic()
        self.summary: dict[str, list] = {
            "recipes": [],
            "models": [],
            "runs": [],
            "alerts": [],
            "experiments": [],
        }
        # Day 0 of the demo's history: LEAD_DAYS before the monitoring history, which ends now.
        self.origin = (timezone.now() - timedelta(days=days + LEAD_DAYS)).replace(
            hour=9, minute=0, second=0, microsecond=0
        )

    # --- helpers ---------------------------------------------------------------------------

    def say(self, message: str) -> None:
        self.log(f"[{time.monotonic() - self.started:6.1f}s] {message}")

    def on(self, day: float | None, hours: float = 1) -> datetime | None:
        """The time of a step of the demo's history: `day` days after its origin (09:00 on
        day 0), `hours` into the working day; the writes of the demo pass it as `at=`.
        None (no day given) is now."""
        return None if day is None else self.origin + timedelta(days=day, hours=hours)

    def clone(
        self,
        source: Recipe,
        name: str,
        description: str,
        tags: list[str],
        change=None,
        *,
        day: float | None = None,
    ) -> Recipe:
        manifest = None
        if change is not None:
            manifest = with_changes(source.current_version.manifest, change)
        recipe = recipe_clone(
            source=source,
            user=self.user,
            name=name,
            description=description,
            tags=[*tags, DEMO_TAG],
            manifest=manifest,
            at=self.on(day),
            # A clone of an industry recipe is a client's: the client is named after it.
            client=demo_client(name, self.user) if source.level == Level.INDUSTRY else None,
        )
        self.summary["recipes"].append(recipe)
        self.say(f"recipe '{name}' ({recipe.level}, cloned from '{source.name}')")
        return recipe

    def new_version(
        self,
        recipe: Recipe,
        version: str | None,
        changelog: str,
        change,
        *,
        day: float | None = None,
        at: datetime | None = None,
    ) -> RecipeVersion:
        """The recipe's current manifest with `change` as its next version: numbered `version`,
        or, None, by the bump version_create suggests for the change (a tuning section: the
        next patch). Dated `at` when given, else on `day`."""
        recipe = Recipe.objects.get(pk=recipe.pk)  # fresh current_version
        created = version_create(
            recipe=recipe,
            user=self.user,
            manifest=with_changes(recipe.current_version.manifest, change),
            version=version,
            changelog=changelog,
            at=at if at is not None else self.on(day, hours=5),
        )
        self.say(f"  version {created.version} of '{recipe.name}': {changelog}")
        return created

    def approve(
        self,
        recipe: Recipe,
        version: str | None = None,
        *,
        day: float | None = None,
        evidence_seed: int | None = None,
    ) -> RecipeVersion:
        """Approve on `day` through the gate on a real backtest run the day before
        (`evidence_seed`), or — to keep seeding fast — with an override whose reason says so.
        A gate that fails is overridden too, with its reasons quoted, so the demo shows both
        kinds of record."""
        at = self.on(day, hours=6)
        recipe = Recipe.objects.get(pk=recipe.pk)
        target = recipe.versions.get(version=version) if version else recipe.current_version
        if evidence_seed is None:
            approved = version_approve(version=target, user=self.user, override_reason=DEMO_OVERRIDE, at=at)
            self.say(f"  approved '{recipe.name}' {approved.version} (override: no evidence run in the demo)")
            return approved
        self.execute(
            self.start(recipe, run_type=RunType.BACKTEST, version=target, seed=evidence_seed),
            day=None if day is None else day - 1,
        )
        try:
            approved = version_approve(version=target, user=self.user, at=at)
            self.say(f"  approved '{recipe.name}' {approved.version} on its backtest")
        except Conflict as exc:
            approved = version_approve(
                version=target,
                user=self.user,
                override_reason=f"Seeded demo, approved although: {exc.detail}",
                at=at,
            )
            self.say(f"  approved '{recipe.name}' {approved.version} by override: {exc.detail}")
        return approved

    def execute(
        self, run: Run, expect: str = RunStatus.SUCCEEDED, *, day: float | None = None, hours: float = 2
    ) -> Run:
        """Execute `run` now (the real executor), then date it `day` of the demo's history."""
        started = time.monotonic()
        outcome = execute_run(run.id)
        run.refresh_from_db()
        if day is not None:
            run = run_move_in_time(run=run, at=self.on(day, hours=hours))
        if outcome != expect:
            raise DemoError(
                f"{run.run_type} run {run.id} of '{run.recipe.name}' ended '{outcome}', "
                f"expected '{expect}': {run.error}"
            )
        self.summary["runs"].append(run)
        note = f": {run.error[:160]}" if run.error else ""
        self.say(
            f"  {run.run_type} run on '{run.recipe.name}' {run.recipe_version.version} "
            f"{run.status} in {time.monotonic() - started:.1f}s{note}"
        )
        return run

    def start(self, recipe: Recipe, *, run_type=RunType.TRAIN, model=None, version=None, rows=None, seed=1):
        return run_start(
            user=self.user,
            recipe=recipe,
            recipe_version=version,
            run_type=run_type,
            model=model,
            params={"synthetic": {"rows": rows or self.rows, "seed": seed}},
        )

    def trained_model(
        self,
        recipe: Recipe,
        version: RecipeVersion,
        name: str,
        *,
        seed: int,
        rows: int | None = None,
        day: float | None = None,
    ) -> MLModel:
        model = model_register(
            user=self.user, name=name, recipe=recipe, recipe_version=version, at=self.on(day)
        )
        self.say(f"model '{name}' registered on '{recipe.name}' {version.version}")
        self.execute(self.start(recipe, model=model, version=version, seed=seed, rows=rows), day=day)
        model.refresh_from_db()
        self.summary["models"].append(model)
        return model

    def set_status(
        self, model: MLModel, *statuses: str, day: float | None = None, every: float = 4
    ) -> MLModel:
        """Move `model` through `statuses`, the first on `day`, the next `every` days later."""
        first = day
        for i, status in enumerate(statuses):
            result = model_set_status(
                model=model,
                user=self.user,
                status=status,
                at=self.on(None if first is None else first + i * every, hours=7),
            )
            model = result["model"]
            replaced = f" (replaced {', '.join(result['replaced'])})" if result["replaced"] else ""
            self.say(f"  model '{model.name}' → {status}{replaced}")
        return model
