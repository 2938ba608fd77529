"""Writes on monitoring, by concern:

* ``checks``    a check of a model on a batch (``model_check``) and recording a snapshot,
  posted or computed, with its alert episodes (``snapshot_record``);
* ``scoring``   batch scoring of batch-mode models (``scoring_next_batch``, ``scoring_start``,
  ``scoring_claim_check``, ``scoring_check``, ``scoring_check_failed``);
* ``outcomes``  labels posted later for a scored batch (``scoring_outcomes``);
* ``comparison`` models of one recipe compared on the same labelled window, with intervals
  (``models_compare``);
* ``retraining`` the manifest's retraining policy acted on: triggers, skips, the challenger's
  train run and the decision (``retrain_trigger``, ``retrain_decide``).

Callers import from ``monitoring.services``; the names below are the package's interface.
"""

from .checks import model_check, snapshot_record, synthetic_batch
from .comparison import models_compare
from .outcomes import scoring_outcomes
from .retraining import finished_retrains, retrain_decide, retrain_trigger
from .scoring import (
    scoring_batch_key,
    scoring_check,
    scoring_check_failed,
    scoring_claim_check,
    scoring_next_batch,
    scoring_start,
)

__all__ = [
    "finished_retrains",
    "retrain_decide",
    "retrain_trigger",
    "model_check",
    "models_compare",
    "scoring_batch_key",
    "scoring_check",
    "scoring_check_failed",
    "scoring_claim_check",
    "scoring_next_batch",
    "scoring_outcomes",
    "scoring_start",
    "snapshot_record",
    "synthetic_batch",
]
