import django_filters

from .models import MLModel, ModelStatus


class MLModelFilter(django_filters.FilterSet):
    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    recipe_version_id = django_filters.CharFilter(field_name="recipe_version_id")
    status = django_filters.ChoiceFilter(choices=ModelStatus.choices)
    model_family = django_filters.CharFilter(field_name="recipe__model_family")
    owner = django_filters.CharFilter(field_name="owner")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = MLModel
        fields = ["recipe_id", "recipe_version_id", "status", "model_family", "owner", "search"]
