import django_filters
from django.db.models import Q

from .models import Family, Level, Recipe, RecipeStatus, RecipeTag


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
        lookup on PostgreSQL (migrations 0003, 0005); tags through a subquery, so a recipe
        with several matching tags is listed once."""
        value = value.strip()
        if not value:
            return queryset
        tagged = RecipeTag.objects.filter(name__icontains=value).values("recipe_id")
        return queryset.filter(
            Q(name__icontains=value)
            | Q(description__icontains=value)
            | Q(id__icontains=value)
            | Q(id__in=tagged)
        )
