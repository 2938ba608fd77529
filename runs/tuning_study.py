"""A stored Optuna study read back for the study page and API: every trial and the best
(``summary``) and Optuna's four charts (``figures``). Plain Python (Optuna, Plotly), no
Django: ``runs/tuning_selectors.py`` loads the study and adds the trials' child runs."""

from __future__ import annotations

import optuna
from optuna import visualization
from optuna.trial import TrialState

from . import tuning


def summary(study: optuna.Study) -> dict:
    """Every trial of the study and the best (its metrics on the validation rows)."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    return {
        "study_name": study.study_name,
        "metric": study.user_attrs.get("metric"),
        "direction": study.direction.name.lower(),
        "counts": tuning.counts(study),
        "best": None
        if best is None
        else {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "metrics": best.user_attrs.get("metrics") or {},
            "baseline": bool(best.user_attrs.get("baseline")),
        },
        "trials": [
            {
                "number": t.number,
                "state": tuning.STATES.get(t.state, t.state.name.lower()),
                "value": t.value if t.state == TrialState.COMPLETE else None,
                "params": t.params,
                "baseline": bool(t.user_attrs.get("baseline")),
                "error": t.user_attrs.get("error", ""),
                "pruned_at": t.last_step if t.state == TrialState.PRUNED else None,
                "started_at": t.datetime_start.isoformat() if t.datetime_start else None,
                "finished_at": t.datetime_complete.isoformat() if t.datetime_complete else None,
                "seconds": t.duration.total_seconds() if t.duration else None,
            }
            for t in trials
        ],
    }


def figures(study: optuna.Study) -> list[dict]:
    """The study's four charts: [{"title", "figure" (Plotly) or None, "missing" (why not)}] —
    the optimisation history, the parameter importances (fANOVA, seeded), parallel coordinates
    and slice plots (Optuna's own). A chart that needs more finished trials says so."""
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    charts = [
        ("Optimisation history", 1, lambda: visualization.plot_optimization_history(study)),
        (
            "Parameter importances",
            2,
            lambda: visualization.plot_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            ),
        ),
        ("Parallel coordinates", 2, lambda: visualization.plot_parallel_coordinate(study)),
        ("Slice plots", 1, lambda: visualization.plot_slice(study)),
    ]
    out = []
    for title, needs, build in charts:
        if complete < needs:
            out.append(
                {
                    "title": title,
                    "figure": None,
                    "missing": f"needs {needs} finished trials; the study has {complete}",
                }
            )
            continue
        try:
            figure = build()
        except (ValueError, RuntimeError) as exc:  # e.g. importances when no parameter varied
            out.append({"title": title, "figure": None, "missing": str(exc)[:200]})
            continue
        figure.update_layout(
            template="plotly_white", title=title, height=420, margin={"l": 60, "r": 20, "t": 60, "b": 60}
        )
        out.append({"title": title, "figure": figure, "missing": ""})
    return out
