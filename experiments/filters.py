import django_filters
from django.db.models import Q

from .models import Experiment, ExperimentMode, ExperimentStatus


class ExperimentFilter(django_filters.FilterSet):
    """GET /experiments?recipe_id=&status=&mode=&model_id= (model: as champion or challenger)."""

    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    status = django_filters.ChoiceFilter(choices=ExperimentStatus.choices)
    mode = django_filters.ChoiceFilter(choices=ExperimentMode.choices)
    model_id = django_filters.CharFilter(method="filter_model")

    class Meta:
        model = Experiment
        fields = ["recipe_id", "status", "mode", "model_id"]

    def filter_model(self, queryset, name, value):
        return queryset.filter(Q(champion_id=value) | Q(challenger_id=value))
