"""Writes on monitoring, by concern:

* ``checks``    a check of a model on a batch (``model_check``) and recording a snapshot,
  posted or computed, with its alert episodes (``snapshot_record``);
* ``scoring``   batch scoring of batch-mode models (``scoring_next_batch``, ``scoring_start``,
  ``scoring_claim_check``, ``scoring_check``);
* ``outcomes``  labels posted later for a scored batch (``scoring_outcomes``).

Callers import from ``monitoring.services``; the names below are the package's interface.
"""

from .checks import model_check, snapshot_record, synthetic_batch
from .outcomes import scoring_outcomes
from .scoring import scoring_batch_key, scoring_check, scoring_claim_check, scoring_next_batch, scoring_start

__all__ = [
    "model_check",
    "scoring_batch_key",
    "scoring_check",
    "scoring_claim_check",
    "scoring_next_batch",
    "scoring_outcomes",
    "scoring_start",
    "snapshot_record",
    "synthetic_batch",
]
