import django_filters

from .models import Dataset, Run, RunStatus, RunType


class RunFilter(django_filters.FilterSet):
    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    recipe_version_id = django_filters.CharFilter(field_name="recipe_version_id")
    model_id = django_filters.CharFilter(field_name="model_id")
    run_type = django_filters.ChoiceFilter(choices=RunType.choices)
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)

    class Meta:
        model = Run
        fields = ["recipe_id", "recipe_version_id", "model_id", "run_type", "status"]


class DatasetFilter(django_filters.FilterSet):
    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Dataset
        fields = ["recipe_id", "search"]
