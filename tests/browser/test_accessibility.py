"""Accessibility: axe-core, run in Chromium on every page type of a workspace filled with the
demo's real data (recipes at every level, models in every status, runs of every type and
outcome, a monitoring history with alerts), finds no serious or critical violation.

axe-core is vendored as a test asset (tests/browser/assets/axe.min.js, see the README there)
and injected into every document before the page's own scripts run, so a page's Content
Security Policy does not block it and no page ships it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import NoReverseMatch, reverse
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from experiments.models import Experiment
from models_registry.models import MLModel, ModelStatus
from monitoring.models import Comparison
from recipes import client_services
from recipes.models import Client, ClientRole, Recipe
from runs.models import Run, RunStatus
from tests.browser.htmx import swapped_in
from workspace.demo import MIN_ROWS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.once,
    pytest.mark.django_db(transaction=True),
]

AXE_JS = Path(__file__).parent / "assets" / "axe.min.js"
BLOCKING_IMPACTS = {"serious", "critical"}
# Rules enforced whatever axe rates them: the issue found these and they stay fixed.
ALWAYS_ENFORCED = {"empty-table-header"}
# Days of demo monitoring history: enough for its drift episode, so alerts are on the pages.
DEMO_DAYS = 12

RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({target: n.target.join(" "), html: n.html.slice(0, 200),
                              summary: n.failureSummary}))
  }));
}"""


def blocking(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in BLOCKING_IMPACTS or v["id"] in ALWAYS_ENFORCED]


def describe(found: dict[str, list[dict]]) -> str:
    lines = []
    for where, violations in found.items():
        for v in violations:
            lines.append(f"{where}: [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
            for node in v["nodes"][:6]:
                summary = " ".join((node["summary"] or "").split())
                lines.append(f"    {node['target']}  {node['html']}\n      {summary}")
            if len(v["nodes"]) > 6:
                lines.append(f"    … and {len(v['nodes']) - 6} more elements")
    return "\n".join(lines)


def settle(page) -> None:
    """Wait until the page's HTMX swaps and chart scripts are done (polling pages never go
    fully idle, hence the bounded wait)."""
    try:
        page.wait_for_load_state("networkidle", timeout=8_000)
    except PlaywrightTimeout:
        pass


def axe(page) -> list[dict]:
    settle(page)
    return page.evaluate(RUN_AXE)


def login(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/")


def page_urls(base: str) -> Iterator[tuple[str, str]]:
    """(name, url) of every page type, for objects of the demo in each state they come in."""
    lib = reverse("pages:library")
    for tab in ("recipes", "models", "runs", "monitoring"):
        yield f"library {tab}", f"{base}{lib}?tab={tab}"
    yield "library search", f"{base}{lib}?tab=recipes&search=grocery"

    recipes = {
        "baseline": Recipe.objects.filter(level="baseline").order_by("pk").first(),
        "industry": Recipe.objects.filter(level="industry", versions__approved_at__isnull=False)
        .order_by("created_at")
        .first(),
        "client": Recipe.objects.filter(level="client").order_by("created_at").first(),
    }
    for level, recipe in recipes.items():
        if recipe is None:
            continue
        url = f"{base}{reverse('pages:recipe', args=[recipe.pk])}"
        for tab in ("overview", "manifest", "versions", "lineage", "example"):
            yield f"recipe ({level}) {tab}", f"{url}?tab={tab}"
    baseline = recipes["baseline"]
    yield "clone", f"{base}{reverse('pages:recipe-clone', args=[baseline.pk])}"

    shown = set()
    for model in MLModel.objects.order_by("created_at"):
        if model.status in shown:
            continue
        shown.add(model.status)
        url = f"{base}{reverse('pages:model', args=[model.pk])}"
        for tab in ("summary", "monitoring"):
            yield f"model ({model.status}) {tab}", f"{url}?tab={tab}"
    yield "model register", f"{base}{reverse('pages:model-new')}?recipe={baseline.pk}"

    kinds = set()
    for run in Run.objects.order_by("created_at"):
        if (run.run_type, run.status) in kinds:
            continue
        kinds.add((run.run_type, run.status))
        yield f"run ({run.run_type}, {run.status})", f"{base}{reverse('pages:run', args=[run.pk])}"
    yield "run form", f"{base}{reverse('pages:run-new')}"
    model = MLModel.objects.exclude(training_run=None).order_by("created_at").first()
    yield (
        "run form (model)",
        f"{base}{reverse('pages:run-new')}?recipe={model.recipe_id}&model={model.pk}&run_type=eval",
    )
    succeeded: dict[str, list[str]] = {}
    for run_id, recipe_id in Run.objects.filter(status=RunStatus.SUCCEEDED).values_list("pk", "recipe_id"):
        succeeded.setdefault(recipe_id, []).append(run_id)
    ids = max(succeeded.values(), key=len)[:3]
    assert len(ids) >= 2, "the demo has no recipe with two succeeded runs to compare"
    yield "compare", f"{base}{reverse('pages:run-compare')}?ids={','.join(ids)}"
    comparison = Comparison.objects.order_by("created_at").first()  # a retrain's, in the demo
    if comparison is not None:
        yield "model comparison", f"{base}{reverse('pages:comparison', args=[comparison.pk])}"
    experiment = Experiment.objects.order_by("started_at").first()  # the demo's A/B test
    assert experiment is not None, "the demo has no A/B test"
    yield "experiment", f"{base}{reverse('pages:experiment', args=[experiment.pk])}"
    yield "not found", f"{base}/model-development/runs/run_does_not_exist"


def dataset_urls(base: str, user) -> Iterator[tuple[str, str]]:
    """The datasets list and a dataset's page, when the workspace has them."""
    try:
        url = reverse("pages:datasets")
    except NoReverseMatch:
        return
    yield "datasets", f"{base}{url}"
    from runs import services as run_services

    # A site-scoring upload missing most required columns: its page lists the problems.
    upload = SimpleUploadedFile(
        "sites.csv", b"site_id,median_income,population_3km\ns1,52000,18000\ns2,61000,9000\n", "text/csv"
    )
    dataset = run_services.dataset_create(
        user=user, upload=upload, name="Candidate sites", recipe=Recipe.objects.get(pk="recipe_location_base")
    )
    detail = f"{base}{reverse('pages:dataset', args=[dataset.pk])}"
    yield "dataset", detail
    yield "dataset checked", f"{detail}?recipe=recipe_location_base"


def test_every_page_has_no_serious_or_critical_axe_violation(page, live_server, lead):
    call_command("seed_demo", days=DEMO_DAYS, rows=MIN_ROWS, verbosity=0)
    assert MLModel.objects.filter(status=ModelStatus.PRODUCTION).exists()
    # The lead visits every client's pages: a lead in each client (others would get 404s).
    for client in Client.objects.all():
        client_services.membership_set(user=None, client=client, member=lead, role=ClientRole.LEAD)
    base = live_server.url
    page.context.add_init_script(path=str(AXE_JS))
    found: dict[str, list[dict]] = {}
    visited = []

    def check(name: str) -> None:
        visited.append(name)
        if problems := blocking(axe(page)):
            found[f"{name} ({page.url})"] = problems

    page.goto(f"{base}/accounts/login/")
    check("login")
    page.fill("#id_username", "lead")
    page.fill("#id_password", "wrong password")
    page.click("#login-form button[type=submit]")
    check("login with an error")

    login(page, base, "lead", "pw-lead-1")
    broken = []
    for name, url in [*page_urls(base), *dataset_urls(base, lead)]:
        response = page.goto(url)
        if name.startswith("dataset") and response.status == 404:
            continue  # no datasets page in this workspace
        if response.status != (404 if name == "not found" else 200):
            broken.append(f"{name}: {url} answered {response.status}")
        check(name)
    assert not broken, "pages that did not render:\n" + "\n".join(broken)

    # States reached by interacting: the clone dialog, the editor with a validation error,
    # an approval gate, and a chat with a proposal.
    page.goto(f"{base}{reverse('pages:recipe', args=['recipe_location_base'])}")
    page.click("a[data-dialog-open=clone-dialog]")
    expect(page.locator("#clone-dialog")).to_be_visible()
    check("clone dialog")
    page.fill("#clone-dialog input[name=name]", "Location Scoring — Accessibility")
    page.click("#clone-dialog button[type=submit]")
    expect(page.locator("h1")).to_have_text("Location Scoring — Accessibility")
    clone_url = page.url.split("?")[0]
    page.goto(f"{clone_url}?tab=manifest")
    page.click("#edit-manifest")
    swapped_in(page, "#manifest-text").fill('{"schema_version": 1, "model_family": "nope"}')
    expect(page.locator("#manifest-errors .error-list")).to_be_visible()
    check("manifest editor with errors")
    page.goto(clone_url)
    # The clone's first version awaits approval: the lead opens its gate.
    page.locator("a.btn", has_text=re.compile(r"^\s*Approve ")).first.click()
    expect(page.locator("#approval .gate").first).to_be_visible()
    check("approval gate")

    page.goto(f"{base}{reverse('pages:chat')}")
    check("chat (empty)")
    page.fill("#chat-form textarea[name=message]", "Weekly demand forecast per store for a grocery chain")
    page.click("#chat-form button[type=submit]")
    expect(page.locator(".msg-assistant")).to_have_count(1)
    check("chat with a proposal")

    assert not found, (
        f"axe-core found serious or critical violations on {len(found)} of {len(visited)} pages:\n"
        + describe(found)
    )
    assert len(visited) >= 30, visited  # every page type was reached
    assert page.js_errors == [], page.js_errors
