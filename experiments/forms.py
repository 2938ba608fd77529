"""The "Start an experiment" form of the model page (templates/experiments/
_model_experiments.html posts it; the start page re-renders it with errors). Types only:
the rules are experiments.services.experiment_start's, as for the API."""

from __future__ import annotations

from django import forms

from .models import ExperimentMode


class ExperimentStartForm(forms.Form):
    challenger = forms.ChoiceField(help_text="A trained model of this recipe.")
    mode = forms.ChoiceField(
        choices=ExperimentMode.choices,
        initial=ExperimentMode.AB,
        help_text="A/B: the challenger serves its share of units. Shadow: it scores every request unseen.",
    )
    split = forms.FloatField(
        required=False,
        initial=0.1,
        label="Challenger's share",
        help_text="A/B: the share of units the challenger serves, e.g. 0.1 for 90/10.",
    )
    unit_key = forms.CharField(
        max_length=100,
        initial="customer_id",
        label="Unit field",
        help_text="The request field naming a unit (customer_id, store_id…): a unit always sees the same arm.",
    )
    horizon = forms.IntegerField(
        required=False,
        min_value=2,
        label="Horizon (units per arm)",
        help_text="Or plan it from a baseline below.",
    )
    baseline_rate = forms.FloatField(
        required=False, label="Baseline rate", help_text="0/1 outcomes: the champion's rate."
    )
    baseline_sd = forms.FloatField(
        required=False, label="Baseline standard deviation", help_text="Numeric outcomes."
    )
    mde = forms.FloatField(
        required=False, label="Minimum detectable effect", help_text="Absolute difference."
    )

    def __init__(self, *args, candidates, **kwargs):
        super().__init__(*args, **kwargs)
        # A blank first choice: the browser asks for one, and a form sent without one comes
        # back showing none chosen next to its error (not the first model, as if chosen).
        self.fields["challenger"].choices = [
            ("", "Choose a challenger"),
            *((m.pk, f"{m.name} ({m.status})") for m in candidates),
        ]

    def start_kwargs(self) -> dict:
        data = self.cleaned_data
        kwargs = {
            name: data.get(name)
            for name in ("mode", "split", "unit_key", "horizon", "baseline_rate", "baseline_sd", "mde")
        }
        return kwargs
