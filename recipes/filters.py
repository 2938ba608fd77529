import django_filters
from django.db.models import F, Q
from django.db.models.lookups import In

from .models import Family, Level, Recipe, RecipeStatus, RecipeTag


class InArray(In):
    """`column IN (subquery)`, written on PostgreSQL as `column = ANY(ARRAY(subquery))`.

    OR-ed with conditions that have their own indexes (the text search), a plain `IN
    (subquery)` becomes a hashed subplan that PostgreSQL can only test row by row: the planner
    guesses that half the table matches, the count reads every recipe and the page walks the
    created-at index filtering each one. The array is computed once and `= ANY(array)` is an
    index condition, so every branch is an index scan, joined in one BitmapOr (bench/README.md
    §1 has the times). SQLite keeps the plain form."""

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY(ARRAY{rhs})", (*lhs_params, *rhs_params)


class RecipeFilter(django_filters.FilterSet):
    """Used by the API list and the library page alike."""

    model_family = django_filters.ChoiceFilter(choices=Family.choices)
    level = django_filters.ChoiceFilter(choices=Level.choices)
    status = django_filters.ChoiceFilter(choices=RecipeStatus.choices)
    parent_id = django_filters.CharFilter(field_name="parent_id")
    tag = django_filters.CharFilter(method="filter_tag")
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = Recipe
        fields = ["model_family", "level", "status", "parent_id", "tag", "search"]

    def filter_tag(self, queryset, name, value):
        return queryset.filter(
            id__in=RecipeTag.objects.filter(name=value.strip().lower()).values("recipe_id")
        )

    def filter_search(self, queryset, name, value):
        """Name, description, id or a tag containing the text. Each branch is a trigram-index
        lookup on PostgreSQL (migrations 0003, 0005), joined in one BitmapOr; tags through a
        subquery (InArray), so a recipe with several matching tags is listed once."""
        value = value.strip()
        if not value:
            return queryset
        tagged = RecipeTag.objects.filter(name__icontains=value).values("recipe_id")
        return queryset.filter(
            Q(name__icontains=value)
            | Q(description__icontains=value)
            | Q(id__icontains=value)
            | InArray(F("id"), tagged)
        )
