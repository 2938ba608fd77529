"""Contributions alongside a score run's predictions (runs.explain.batch) and the deployment
config that asks for them (recipes.explain_config.scoring_problems). Pure: no Django."""

from __future__ import annotations

import numpy as np
import pytest

from recipes.explain_config import SCORE_EXPLAIN_MAX_ROWS, scoring_problems
from runs.explain import batch, explain_rows
from runs.tests.test_explain import explained, fitted  # noqa: F401  (module fixtures)


@pytest.mark.parametrize("name", ["pricing", "forecasting"])
def test_contribution_columns_add_up_and_match_the_per_row_answer(fitted, explained, name):  # noqa: F811
    f, ex = fitted(name), explained(name)
    inputs = f["test"][f["inputs"]].iloc[:12]
    inputs.index = inputs.index + 1000  # the chunk's own index is kept
    out = batch.contribution_columns(f["family"], f["model"], inputs, ex.background, max_rows=9)
    assert list(out.index) == list(inputs.index) and out.columns[-1] == "base_value"
    contrib = out.filter(like=batch.PREFIX).to_numpy()
    assert np.isnan(contrib[9:]).all() and not np.isnan(contrib[:9]).any()
    answer = explain_rows(f["family"], f["model"], inputs.iloc[:9], ex.background, document=ex.document)
    outputs = np.array([a["output"] for a in answer])
    np.testing.assert_allclose(out["base_value"].iloc[:9] + contrib[:9].sum(axis=1), outputs, atol=1e-6)
    first = {k: out[f"{batch.PREFIX}{k}"].iloc[0] for k in answer[0]["contributions"]}
    assert first == pytest.approx(answer[0]["contributions"], abs=1e-9)


def test_no_rows_explained_gives_nan_columns(fitted, explained):  # noqa: F811
    f, ex = fitted("pricing"), explained("pricing")
    out = batch.contribution_columns(
        f["family"], f["model"], f["test"][f["inputs"]].iloc[:3], ex.background, max_rows=0
    )
    assert out.shape[0] == 3 and out.isna().all().all()


@pytest.mark.parametrize(
    ("config", "path", "words"),
    [
        ({"explain": "yes"}, ("explain",), "true or false"),
        ({"explain": True, "explain_rows": 0}, ("explain_rows",), "from 1 to"),
        ({"explain": True, "explain_rows": SCORE_EXPLAIN_MAX_ROWS + 1}, ("explain_rows",), "from 1 to"),
        ({"explain": True, "explain_rows": 10.5}, ("explain_rows",), "whole number"),
        ({"explain_rows": 10}, ("explain_rows",), "needs 'explain': true"),
    ],
)
def test_scoring_explain_settings_are_checked_with_their_path(config, path, words):
    [(where, message)] = scoring_problems(config)
    assert where == path and words in message


def test_valid_scoring_explain_settings_have_no_problem():
    assert scoring_problems({"explain": True, "explain_rows": 500, "schedule": "0 6 * * *"}) == []
    assert scoring_problems({}) == [] and scoring_problems({"explain": False}) == []
