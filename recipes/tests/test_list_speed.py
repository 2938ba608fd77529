"""The cheap path of the API's recipe list (issue #15 §1's latency targets, bench/README.md §1):
it reads recipes.api.recipe_list_rows, and its text search ORs its tag branch as an array. It
must give exactly what the general path gives, at a fixed number of queries."""

from __future__ import annotations

import pytest
from django.db import connection

from recipes.api import recipe_list_rows, recipe_queryset
from recipes.filters import RecipeFilter
from recipes.models import Recipe, RecipeTag
from recipes.serializers import RecipeSerializer
from recipes.services import recipe_clone

API = "/api/ml-development"


@pytest.fixture
def recipes(baselines, user):
    """Industry recipes under the pricing baseline; one has two tags that contain "zebra", one
    the text in its description only, one in its name."""
    base = Recipe.objects.get(pk="recipe_pricing_base")
    made = {
        name: recipe_clone(source=base, user=user, name=name, level="industry")
        for name in ("striped", "plain", "Zebra crossing", "described")
    }
    RecipeTag.objects.bulk_create(
        [RecipeTag(recipe=made["striped"], name="zebra-a"), RecipeTag(recipe=made["striped"], name="zebra-b")]
    )
    Recipe.objects.filter(pk=made["described"].pk).update(description="about a ZEBRA")
    return made


def test_search_matches_name_description_id_and_tags_each_recipe_once(api_client, recipes):
    body = api_client.get(f"{API}/recipes?search=zebra").json()
    assert sorted(row["name"] for row in body["results"]) == ["Zebra crossing", "described", "striped"]
    assert body["count"] == 3
    by_id = api_client.get(f"{API}/recipes?search={recipes['plain'].pk}").json()
    assert [row["id"] for row in by_id["results"]] == [recipes["plain"].pk]


def test_search_with_no_tag_match_still_finds_by_text(api_client, recipes):
    # the tag branch's subquery is empty: `= ANY(ARRAY[])` on PostgreSQL is false, not an error
    body = api_client.get(f"{API}/recipes?search=crossing").json()
    assert [row["name"] for row in body["results"]] == ["Zebra crossing"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's form of the tag branch")
def test_on_postgresql_the_tag_branch_is_an_array_the_planner_can_or_with_the_indexes(recipes, user):
    sql = str(RecipeFilter({"search": "zebra"}, queryset=Recipe.objects.all()).qs.query)
    assert '= ANY(ARRAY(SELECT "U0"."recipe_id"' in sql and " IN (SELECT" not in sql


def test_recipe_list_rows_equal_the_general_querysets_rows(recipes, user, django_assert_num_queries):
    general = RecipeSerializer(recipe_queryset(user).order_by("created_at", "id"), many=True).data
    rows = list(recipe_list_rows(user).order_by("created_at", "id"))  # the page and two prefetches
    with django_assert_num_queries(0):
        lean = RecipeSerializer(rows, many=True).data
    assert [dict(item) for item in lean] == [dict(item) for item in general]
    striped = next(item for item in lean if item["id"] == recipes["striped"].pk)
    assert {"zebra-a", "zebra-b"} <= set(striped["tags"]) and striped["current_version"]["version"]
