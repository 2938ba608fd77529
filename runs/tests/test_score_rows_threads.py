"""A score run with more than one thread predicts several chunks at a time and gets the
scores of one thread (runs.pipeline.score_rows); LightGBM boosters are shared by the
threads."""

from __future__ import annotations

import numpy as np
import pytest

from recipes import baselines
from runs.families import get_family, worlds
from runs.pipeline import score_rows


@pytest.mark.parametrize("name", ["next_best_action", "location_scoring"])
def test_threads_give_the_scores_of_one_thread(name):
    family = get_family(name)
    manifest = baselines.manifest(name)
    for stage in manifest["pipeline"]["stages"]:
        if stage["type"] == "training":  # a small, fast model
            hyper = stage["config"].setdefault("hyperparameters", {})
            hyper.update({"n_estimators": 20} if name == "next_best_action" else {"num_boost_round": 20})
    train = worlds.resolve(family, {"rows": 1500, "seed": 2})
    frame = family.prepare(worlds.generate(family, train), manifest)
    model = family.fit(family.split(frame, manifest)[0], manifest, threads=1)
    batch = worlds.generate(family, worlds.resolve(family, {"rows": 4000}, after=train))
    calls: list[int] = []

    class Counting:
        @staticmethod
        def predict(m, rows):
            calls.append(len(rows))
            return family.predict(m, rows)

    whole = np.asarray(family.predict(model, batch), dtype=float)
    threaded = score_rows(Counting, model, batch, [family.GRAIN], chunk_rows=500, threads=2)
    assert len(calls) == 8 and sum(calls) == len(batch)
    assert np.array_equal(threaded, whole)
    assert np.array_equal(score_rows(family, model, batch, [family.GRAIN], chunk_rows=700, threads=1), whole)


@pytest.mark.django_db
def test_a_score_run_gets_the_score_threads_and_other_runs_the_run_threads(
    user, baselines, settings, tmp_path
):
    from runs.executor import build_spec
    from runs.services import run_start
    from runs.tests.factories import trained_model

    settings.RUN_THREADS, settings.SCORE_THREADS = 1, 3
    model = trained_model(user, rows=3000)
    score = run_start(user=user, recipe=model.recipe, model=model, run_type="score", params={})
    evaluation = run_start(user=user, recipe=model.recipe, model=model, run_type="eval", params={})
    assert build_spec(score, tmp_path)["threads"] == 3
    assert build_spec(evaluation, tmp_path)["threads"] == 1
