"""The study's pure side (runs/tuning.py), without Django: every hyperparameter the manifest
may tune (recipes.tuning.TUNABLE) changes what the family trains, the sampling, the pruning
callback, and a study that prunes and continues where it stopped."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from datetime import timedelta
from types import SimpleNamespace

import optuna
import pytest

from recipes import tuning as spec
from recipes.baselines import manifest as baseline_manifest
from runs import tuning
from runs.families import get_family, worlds
from runs.pipeline import json_safe

# Two values the model must tell apart, per family and hyperparameter.
VALUES = {
    "num_boost_round": (5, 40),
    "n_estimators": (5, 40),
    "learning_rate": (0.02, 0.3),
    "num_leaves": (3, 40),
    "max_depth": (-1, 2),
    "min_data_in_leaf": (5, 200),
    "min_child_samples": (5, 300),
    "feature_fraction": (0.3, 1.0),
    "bagging_fraction": (0.5, 1.0),
    "bagging_freq": (0, 1),
    "lambda_l1": (0.0, 50.0),
    "lambda_l2": (0.0, 50.0),
    "reg_lambda": (0.0, 50.0),
    "min_gain_to_split": (0.0, 1e9),
    "objective": ("regression", "huber"),
    "per_segment": (True, False),
    "fourier_order": (0, 3),
    "trend": (True, False),
    "cov_type": ("HC1", "nonrobust"),
    "ci_level": (0.5, 0.99),
    "min_segment_rows": (1, 100_000),
}
ROWS = {"location_scoring": 1500, "next_best_action": 3000, "pricing": 3000, "forecasting": 3000}


@pytest.fixture(scope="module")
def data():
    out = {}
    for name, rows in ROWS.items():
        family = get_family(name)
        manifest = baseline_manifest(name)
        if name == "forecasting":  # its LightGBM candidate alone (the others take no hyperparameters)
            spec.training_stage(manifest)[1]["config"]["algorithm"] = "lightgbm"
        frame = family.prepare(
            worlds.generate(family, worlds.resolve(family, {"rows": rows, "seed": 2})),
            manifest,
            log=lambda m: None,
        )
        out[name] = (family, manifest, family.split(frame, manifest))
    return out


def _trained(family, manifest, split, params: dict) -> str:
    model = family.fit(split[0], spec.apply_params(manifest, params), threads=1, log=lambda m: None)
    metrics, _, plots = family.evaluate(model, split[1], manifest)
    return json.dumps(json_safe([metrics, plots]), sort_keys=True)


@pytest.mark.parametrize(
    ("family_name", "name"),
    [(f, n) for f in ROWS for n in spec.TUNABLE[f]],
)
def test_every_tunable_hyperparameter_changes_what_the_family_trains(data, family_name, name):
    family, manifest, split = data[family_name]
    low, high = VALUES[name]
    # Bagging needs both (recipes.tuning refuses a bagging_fraction without a frequency).
    extra = {"bagging_fraction": 0.5} if name == "bagging_freq" else {}
    if name == "bagging_fraction" and family_name != "next_best_action":
        extra = {"bagging_freq": 1}
    assert _trained(family, manifest, split, {name: low, **extra}) != _trained(
        family, manifest, split, {name: high, **extra}
    )


# --------------------------------------------------------------------------- sampling and pruning


def test_suggest_samples_each_type_inside_its_range():
    space = (
        spec.Param("num_leaves", "int", 4, 64, 4),
        spec.Param("feature_fraction", "float", 0.5, 1.0),
        spec.Param("learning_rate", "log", 0.01, 0.3),
        spec.Param("objective", "categorical", choices=("regression", "huber")),
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        params = tuning.suggest(study.ask(), space)
        assert params["num_leaves"] in range(4, 65, 4)
        assert 0.5 <= params["feature_fraction"] <= 1.0
        assert 0.01 <= params["learning_rate"] <= 0.3
        assert params["objective"] in ("regression", "huber")


class _Trial:
    def __init__(self, number=10, prune_after=None):
        self.number, self.reports, self.prune_after = number, [], prune_after

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune_after is not None and len(self.reports) >= self.prune_after


def _round(iteration, *results):
    return SimpleNamespace(iteration=iteration, evaluation_result_list=list(results))


def test_the_pruning_callback_reports_the_validation_loss_in_the_studys_direction():
    trial, history = _Trial(), {}
    callback = tuning.pruning_callback(trial, maximize=True, history=history)
    for i in range(12):
        callback(_round(i, ("train", "l2", 9.0, False), ("valid", "l2", 1.0 + i, False)))
    assert history == {"valid.l2": [[i, 1.0 + i] for i in range(12)]}  # never the training loss
    # A lower-is-better loss reported to a maximising study is negated, every REPORT_EVERY rounds.
    assert trial.reports == [(0, -1.0), (10, -11.0)]
    callback(_round(0, ("valid", "l2", 5.0, False)))  # a family's second booster starts again
    assert history["valid.l2"][-1] == [11, 12.0]


def test_the_pruning_callback_prunes_and_stops():
    callback = tuning.pruning_callback(_Trial(prune_after=2), maximize=False, history={})
    callback(_round(0, ("valid", "auc", 0.7, True)))
    with pytest.raises(optuna.TrialPruned, match="pruned at boosting round 10"):
        callback(_round(10, ("valid", "auc", 0.7, True)))
    stop = threading.Event()
    callback = tuning.pruning_callback(_Trial(), maximize=False, history={}, stop=stop)
    stop.set()
    with pytest.raises(tuning.Stopped):
        callback(_round(0))


def test_a_study_prunes_trials_and_a_second_run_continues_it(data, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "PRUNER_STARTUP_TRIALS", 2)
    family, manifest, split = data["location_scoring"]
    manifest = copy.deepcopy(manifest)
    section = {
        "n_trials": 8,
        "seed": 0,
        "space": {
            "num_boost_round": {"type": "int", "low": 20, "high": 300},
            "learning_rate": {"type": "log", "low": 0.005, "high": 0.5},
        },
    }
    spec.training_stage(manifest)[1]["config"]["tuning"] = section
    config = spec.config(manifest, family.NAME)
    messages = []
    settings = {"storage": f"sqlite:///{tmp_path / 'optuna.db'}", "study_name": "run_test"}

    def study(n_trials):
        return tuning.run_study(
            family=family,
            manifest=manifest,
            config=dataclasses.replace(config, n_trials=n_trials),
            train=split[0],
            threads=1,
            tuning=settings,
            emit=lambda *m: messages.append(m),
            stop=None,
        )

    first = study(5)
    assert tuning.finished(first) == 5
    ends = [m[1] for m in messages if m[0] == "trial" and m[1]["event"] == "end"]
    assert ends[0]["params"] == {"num_boost_round": 300, "learning_rate": 0.05}  # the version's own
    messages.clear()
    second = study(8)
    assert tuning.finished(second) == 8
    ends += [m[1] for m in messages if m[0] == "trial" and m[1]["event"] == "end"]
    assert len(ends) == 8 and len({e["number"] for e in ends}) == 8
    pruned = [e for e in ends if e["state"] == "pruned"]
    assert pruned, [(e["state"], e["value"]) for e in ends]
    assert all(e["pruned_at"] % tuning.REPORT_EVERY == 0 and e["value"] is None for e in pruned)
    assert tuning.counts(second) == {"complete": 8 - len(pruned), "pruned": len(pruned)}


def _location_study(data, tmp_path, family=None, **changes):
    real, manifest, split = data["location_scoring"]
    manifest = copy.deepcopy(manifest)
    spec.training_stage(manifest)[1]["config"]["tuning"] = {
        "n_trials": 50,
        "space": {"num_leaves": {"type": "int", "low": 4, "high": 64}},
    }
    config = dataclasses.replace(spec.config(manifest, real.NAME), **changes)
    messages = []
    study = tuning.run_study(
        family=family or real,
        manifest=manifest,
        config=config,
        train=split[0],
        threads=1,
        tuning={"storage": f"sqlite:///{tmp_path / 'optuna.db'}", "study_name": "run_x"},
        emit=lambda *m: messages.append(m),
        stop=None,
    )
    return study, [m[1] for m in messages if m[0] == "trial" and m[1]["event"] == "end"], messages


def test_the_timeout_ends_the_study_early(data, tmp_path):
    study, ends, _ = _location_study(data, tmp_path, timeout=timedelta(seconds=1))
    assert 1 <= len(ends) < 50 and tuning.finished(study) == len(ends)


def test_a_crashing_trial_fails_with_its_reason_and_three_in_a_row_stop_the_study(data, tmp_path):
    real = data["location_scoring"][0]

    def fit(rows, manifest, *, threads, log):
        leaves = spec.training_stage(manifest)[1]["config"]["hyperparameters"]["num_leaves"]
        if leaves != 31:  # all but the version's own values
            raise ValueError(f"num_leaves {leaves} is too many for this test")
        return real.fit(rows, manifest, threads=threads, log=log)

    family = SimpleNamespace(NAME=real.NAME, split=real.split, evaluate=real.evaluate, fit=fit)
    study, ends, messages = _location_study(data, tmp_path, family=family)
    assert [e["state"] for e in ends] == ["complete", "fail", "fail", "fail"]
    assert "too many for this test" in ends[1]["error"]
    assert ("log", "error", "tuning: 3 trials in a row failed; the study stops") in messages
    assert tuning.counts(study) == {"complete": 1, "fail": 3}
