"""Contributions alongside a score run's predictions (issue #17 §2: "batch scoring can write
contributions alongside predictions"). Plain numpy/pandas, no Django.

A score run whose deployment stage's config has ``"explain": true`` (checked by
``recipes.explain_config.scoring_problems``) adds to its predictions one column
``contrib_<feature>`` per feature and ``base_value``, for its first ``explain_rows`` rows
(at most ``MAX_ROWS``; the others get NaN): the same per-prediction contributions as
``POST /models/{id}/predict`` with ``"explain": true`` (``runs.explain.explain_rows``), on the
model's explanation scale, so ``base_value + sum(contrib_*)`` is the explained output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recipes.explain_config import SCORE_EXPLAIN_MAX_ROWS as MAX_ROWS

from . import _align, _usable, adapters, shapley

PREFIX = "contrib_"
# Rows explained per call (each costs 2^d x B hybrid rows for the exact method).
CHUNK_ROWS = 256


def contribution_columns(
    family,
    model,
    inputs: pd.DataFrame,
    background: pd.DataFrame | None,
    *,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
) -> pd.DataFrame:
    """``contrib_<feature>`` and ``base_value`` columns for ``inputs`` (a score chunk's model
    inputs, in order): the contributions of its first ``max_rows`` rows (capped at
    ``MAX_ROWS``), NaN for the rest and for rows the model cannot explain (a forecaster's
    unknown series). The frame has ``inputs``' index."""
    n = min(len(inputs), max(0, min(int(max_rows), MAX_ROWS)))
    rows = inputs.reset_index(drop=True)
    adapter = adapters.make_adapter(family, model, rows.iloc[: max(n, 1)])
    out = pd.DataFrame(
        np.nan, index=inputs.index, columns=[f"{PREFIX}{f}" for f in adapter.features] + ["base_value"]
    )
    head = _usable(family, model, rows.iloc[:n])
    if head.empty:
        return out
    aligned, background = _align(head, background, adapter)
    positions = head.index.to_numpy()
    for start in range(0, len(aligned), CHUNK_ROWS):
        part = aligned.iloc[start : start + CHUNK_ROWS]
        att = shapley.attributions(adapter, part, background, seed=seed)
        at = positions[start : start + len(part)]
        out.iloc[at, : len(adapter.features)] = att["phi"]
        out.iloc[at, len(adapter.features)] = att["base"]
    return out


class ScoreContributions:
    """A score run's contributions: ``contribution_columns`` of each scored frame in turn (the
    whole batch, or a streamed file's chunks), the first ``rows`` rows of the run explained and
    the rest NaN, counted across the frames."""

    def __init__(self, background: pd.DataFrame, rows: int, seed: int = 0):
        self.background, self.left, self.seed = background, int(rows), seed

    @classmethod
    def from_file(cls, background_path, rows: int) -> ScoreContributions:
        """Against the model's explanation_background.parquet (a local, checked copy)."""
        return cls(pd.read_parquet(background_path), rows)

    def join(self, family, model, scored: pd.DataFrame, inputs: pd.DataFrame) -> pd.DataFrame:
        """``scored`` (a batch's rows and prediction, index 0..n-1) with the contribution
        columns of its model ``inputs`` (the same rows, in order)."""
        columns = contribution_columns(
            family, model, inputs.reset_index(drop=True), self.background, max_rows=self.left, seed=self.seed
        )
        self.left = max(0, self.left - len(inputs))
        return scored.join(columns.set_axis(scored.index))
