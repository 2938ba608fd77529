import django_filters
from django.db.models import Q

from recipes.models import Family, Level

from .models import Dataset, Run, RunOutcome, RunStatus, RunType


class RunFilter(django_filters.FilterSet):
    """Used by the API list and the library's Runs tab alike."""

    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    recipe_version_id = django_filters.CharFilter(field_name="recipe_version_id")
    model_id = django_filters.CharFilter(field_name="model_id")
    run_type = django_filters.ChoiceFilter(choices=RunType.choices)
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    outcome = django_filters.ChoiceFilter(
        choices=RunOutcome.choices, help_text="What the metrics said against the thresholds."
    )
    model_family = django_filters.ChoiceFilter(field_name="recipe__model_family", choices=Family.choices)
    level = django_filters.ChoiceFilter(field_name="recipe__level", choices=Level.choices)
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = Run
        fields = [
            "recipe_id",
            "recipe_version_id",
            "model_id",
            "run_type",
            "status",
            "outcome",
            "model_family",
            "level",
            "search",
        ]

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(id__icontains=value) | Q(recipe__name__icontains=value) | Q(model__name__icontains=value)
        )


class DatasetFilter(django_filters.FilterSet):
    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Dataset
        fields = ["recipe_id", "search"]
