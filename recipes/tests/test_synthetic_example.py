"""One rule for the inherited synthetic example (recipes.selectors.synthetic_example_for) and
one for the ancestor chain (Recipe.ancestors), shared by the API and the recipe page."""

import pytest

from recipes import selectors
from recipes.models import Recipe, SyntheticExample
from recipes.tests.factories import make_recipe

pytestmark = pytest.mark.django_db

API = "/api/ml-development"


@pytest.fixture
def chain(baselines, user):
    """baseline → industry → client recipes of the NBA family (the baseline has an example)."""
    base = Recipe.objects.get(pk="recipe_nba_base")
    industry = make_recipe(user, family="next_best_action", level="industry", parent=base, name="Telco")
    client = make_recipe(user, family="next_best_action", level="client", parent=industry, name="Acme")
    return base, industry, client


def _give_example(recipe: Recipe) -> SyntheticExample:
    return SyntheticExample.objects.create(
        id=f"synth_{recipe.pk}", recipe=recipe, sample_rows_json=[{"own_column": 1}]
    )


def _loaded(recipe: Recipe) -> Recipe:
    return Recipe.objects.select_related("parent__parent").get(pk=recipe.pk)


def test_ancestors_are_root_first_and_read_no_query_when_selected(chain, django_assert_num_queries):
    base, industry, client = chain
    loaded = [_loaded(r) for r in chain]
    with django_assert_num_queries(0):
        assert [[a.pk for a in r.ancestors] for r in loaded] == [[], [base.pk], [base.pk, industry.pk]]


def test_ancestors_without_select_related_read_one_query_per_level(chain, django_assert_num_queries):
    client = Recipe.objects.get(pk=chain[2].pk)
    with django_assert_num_queries(2):
        assert [a.pk for a in client.ancestors] == [chain[0].pk, chain[1].pk]


def test_selector_finds_the_nearest_example_in_one_query(chain, django_assert_num_queries):
    base, industry, client = (_loaded(r) for r in chain)
    with django_assert_num_queries(1):
        example, source = selectors.synthetic_example_for(client)
    assert example.recipe_id == base.pk and source.pk == base.pk
    with django_assert_num_queries(1):
        example, source = selectors.synthetic_example_for(base)
    assert example.recipe_id == base.pk and source is None
    # The nearest one wins: the industry recipe's own example, not the baseline's.
    own = _give_example(industry)
    with django_assert_num_queries(1):
        example, source = selectors.synthetic_example_for(client)
    assert example == own and source.pk == industry.pk
    assert selectors.synthetic_example_for(industry) == (own, None)


def test_selector_without_any_example(chain):
    SyntheticExample.objects.filter(recipe_id=chain[0].pk).delete()
    assert selectors.synthetic_example_for(_loaded(chain[2])) == (None, None)


def test_api_reads_the_chain_and_its_example_in_two_queries(chain, api_client, django_assert_num_queries):
    """The recipe joined with its parent and grandparent, then the example of the whole chain
    (before: a query per level and the parent's own). A client recipe adds one: the user's
    client memberships (the access rule)."""
    base, industry, client = chain
    for recipe, queries in ((base, 2), (industry, 2), (client, 3)):
        with django_assert_num_queries(queries):
            body = api_client.get(f"{API}/recipes/{recipe.pk}/synthetic-example").json()
        assert body["inherited_from"] == (None if recipe == base else base.pk)
        assert body["example_metrics_json"]["qini_coefficient"] > 0
    url = f"{API}/recipes/{client.pk}/synthetic-example"
    own = _give_example(industry)
    body = api_client.get(url).json()
    assert body["inherited_from"] == industry.pk
    assert body["id"] == own.pk and body["sample_rows_json"] == [{"own_column": 1}]
    SyntheticExample.objects.all().delete()
    r = api_client.get(url)
    assert r.status_code == 404
    assert r.json()["detail"] == f"Recipe '{client.pk}' has no synthetic example."


def test_page_shows_the_nearest_ancestors_example(chain, as_user):
    base, industry, client = chain
    _give_example(industry)
    body = as_user.get(f"/model-development/recipes/{client.pk}", {"tab": "example"}).content.decode()
    assert "Inherited from" in body and "Telco" in body and "own_column" in body
    # The breadcrumb is the chain, root first.
    crumbs = body[body.index('<nav class="breadcrumbs"') :]
    crumbs = crumbs[: crumbs.index("</nav>")]
    assert crumbs.index(base.name) < crumbs.index("Telco") < crumbs.index("Acme")
