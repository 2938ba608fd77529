import django_filters

from recipes.models import Family, Level

from .models import MLModel, ModelStatus


class MLModelFilter(django_filters.FilterSet):
    """Used by the API list and the library's Models and Monitoring tabs alike."""

    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    recipe_version_id = django_filters.CharFilter(field_name="recipe_version_id")
    status = django_filters.ChoiceFilter(choices=ModelStatus.choices)
    model_family = django_filters.ChoiceFilter(field_name="recipe__model_family", choices=Family.choices)
    level = django_filters.ChoiceFilter(field_name="recipe__level", choices=Level.choices)
    owner = django_filters.CharFilter(field_name="owner")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = MLModel
        fields = ["recipe_id", "recipe_version_id", "status", "model_family", "level", "owner", "search"]
