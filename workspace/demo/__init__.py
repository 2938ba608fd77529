"""A realistic demo workspace, built only through the services and real runs (`seed_demo`).

Every row comes from the same code paths a user's clicks take: recipes are cloned and
versioned with `recipes.services`, models registered and promoted with
`models_registry.services`, runs started with `runs.services` and executed by the real
executor (in-process, one child process per run), the monitoring history is a daily
`monitoring.services.model_check` on the next window of the model's synthetic world, so drift,
performance and alert episodes are computed, never typed in, and the A/B test goes through
`experiments.services`, as the API's calls do.

Where things are: `builder.py` (the demo's user and clients, DemoBuilder: writes with an
explicit time and the log), `families.py` (each family's recipes, versions, models and runs),
`loop.py` (the site scorer's production loop: checks, retrains, reviews, the A/B test, batch
scoring), `seed.py` (seed_demo, the uploaded datasets), `tuning.py` (the tune run, a step of its
own after the demo's transaction commits: its study's process writes through a connection of
its own).

What it builds (names below are the demo's fixed names):

- under each baseline an industry recipe and one or two client recipes: versions with
  approvals, one recipe in review, one deprecated;
- models in every lifecycle status: registered (its training run failed), staging,
  production (two, each with daily monitoring history) and archived (replaced, or a
  challenger the review turned down);
- runs of every type and ending: train, eval, backtest, score, one failed (too little history
  for the recipe's min_history), one cancelled before it started;
- months of history before the monitoring starts: every write passes an explicit time
  (`at=`, DemoBuilder.on), so versions are weeks apart, evidence runs come the day before
  the approvals they support and promotions after them, all before the first check;
- `days` of daily checks on the production site-scoring model: consecutive one-day windows
  of the world it was trained in, with a covariate-drift episode in the middle (a
  trade-area feature shifted by a growing amount: the `feature_drift` alert fires and
  resolves when the shift goes away) and a concept change in the last days (a competitor
  opens next to half of the sites and stays: the features stay put, the calibration alert
  opens);
- the production loop on that model: each opening of the calibration alert retrains it (the
  check starts the retrain) and the challenger is compared with the champion on the same
  held-out window. The recipe's promotion is manual, so the demo's lead reviews each
  decision: during the drift episode the challenger is no better (nothing new to learn), the
  champion stays and the challenger is archived; after the concept change the challenger,
  trained on the new ground truth, wins, and the lead A/B tests it: half of the sites (by
  site_id) are served by each model through the predict endpoint's routing on the next days
  of the world, each site's outcome is the absolute error of the sales forecast it was
  served against its realised sales (the world's label), and once both arms reach the
  horizon the lead stops the test with the winner the statistics support, which promotes it
  through the model lifecycle (audited). The test is dated inside the history: the scorer's
  daily checks end AB_BATCHES days ago, the test starts after the lead's review, its daily
  traffic follows the last check, and it stops before the seeding;
- an example webhook for BurgerBay's ops channel (inactive: no network in the demo) on the
  Notifications page;
- then the production model's batch scoring (it is deployed as a batch): the next few windows
  scored by real score runs and checked, and the oldest given its outcomes (the world's
  real labels), as `monitoring.scheduler` and POST /models/{id}/outcomes do;
- then a tune run on BurgerBay, dated on the seeding's day after its A/B test: a patch version
  with a tuning section (a few LightGBM hyperparameters, `tuning.N_TRIALS` trials),
  the tune run executed by the real executor (its trials child runs, its study page), a train
  run of that version on the same rows, and "Save best as new version" only when the best
  parameters beat that train run on the holdout (the log and the command's summary give both
  figures; not better, the tune run stays and nothing is saved).
"""

from .builder import DEMO_TAG, MARKER_NAME, DemoBuilder, DemoError, demo_exists, demo_user
from .loop import AB_HORIZON, SCORED_BATCHES, concept_schedule, drift_schedule
from .seed import DEFAULT_DAYS, DEFAULT_ROWS, MIN_ROWS, seed_datasets, seed_demo
from .tuning import TUNED_RECIPE, DemoTuningError

__all__ = [
    "AB_HORIZON",
    "DEFAULT_DAYS",
    "DEFAULT_ROWS",
    "DEMO_TAG",
    "MARKER_NAME",
    "MIN_ROWS",
    "SCORED_BATCHES",
    "TUNED_RECIPE",
    "DemoBuilder",
    "DemoError",
    "DemoTuningError",
    "concept_schedule",
    "demo_exists",
    "demo_user",
    "drift_schedule",
    "seed_datasets",
    "seed_demo",
]
