"""Writes of experiments, by concern: `lifecycle.py` (start, stop promoting the winner),
`outcomes.py`, and `predict.py` (the predict endpoint's routing while an experiment runs,
with the exposures it records); `values.py` reads numbers and units from requests.

Rules, in one place for the API and the pages:

* One running experiment per recipe (a partial unique index; a second one is a 409).
* The champion is the recipe's production model; the challenger a trained model of the same
  recipe that is not the champion (nor archived).
* A unit's arm is `experiments.assignment.assign_arm(experiment.id, unit, split)`: the same
  unit always sees the same arm. In shadow mode the champion answers every row and the
  challenger scores the same rows unseen (its answers are stored, never returned).
* Outcomes: one per exposed unit; posting a unit again replaces its value (last write wins:
  a corrected value is the value). Units never exposed are counted and reported, not stored
  (an outcome needs an arm). A stopped experiment takes no more outcomes: its result stays
  what the decision was made on.
* Stopping with winner "challenger" promotes it through models_registry's lifecycle
  (registered → staging → production, audited; the champion is demoted to staging there).
"""

from .lifecycle import experiment_start, experiment_stop, plan_horizon
from .outcomes import experiment_outcomes, parse_outcomes
from .predict import experiment_predict, running_experiment

__all__ = [
    "experiment_outcomes",
    "experiment_predict",
    "experiment_start",
    "experiment_stop",
    "parse_outcomes",
    "plan_horizon",
    "running_experiment",
]
