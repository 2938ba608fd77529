"""Which arm a unit of an experiment sees: a stable hash, no state, no Django.

`hash_fraction(experiment_id, unit)` maps sha256("<experiment_id>:<unit>") to [0, 1); a unit
is in the challenger's arm when that fraction is below the experiment's split. The same unit
always gets the same arm (in every process, after every restart), the arms of two experiments
are independent (the experiment id is part of the hash), and over many units the challenger's
share converges to the split.
"""

from __future__ import annotations

import hashlib

CHAMPION = "champion"
CHALLENGER = "challenger"
_SCALE = float(1 << 64)


def hash_fraction(experiment_id: str, unit: str) -> float:
    """sha256 of f"{experiment_id}:{unit}", its first 8 bytes as a fraction of 2**64: [0, 1)."""
    digest = hashlib.sha256(f"{experiment_id}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign_arm(experiment_id: str, unit: str, split: float) -> str:
    """ "challenger" for a `split` share of units (0 < split < 1), else "champion"."""
    return CHALLENGER if hash_fraction(experiment_id, unit) < split else CHAMPION
