"""A notebook-style MLflow training script, unchanged from what a data scientist would run
against MLflow's own server: the tests run it in a subprocess with MLFLOW_TRACKING_URI pointing
at the workspace's /mlflow and MLFLOW_TRACKING_TOKEN set, and print what it logged as JSON."""

import json
import sys
import tempfile
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
from sklearn.linear_model import Ridge

experiment = sys.argv[1]
model_name = sys.argv[2]

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 3))
y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=40)

mlflow.set_experiment(experiment)
with mlflow.start_run(run_name="ridge-notebook") as run:
    mlflow.log_param("alpha", 0.5)
    mlflow.log_params({"fit_intercept": True, "solver": "auto"})
    for step in range(5):
        mlflow.log_metric("train_loss", 1.0 / (step + 1), step=step)
    mlflow.log_metrics({"MAPE": 0.12, "rmse": 3.4})
    mlflow.set_tag("team", "eu")
    with tempfile.TemporaryDirectory() as folder:
        notes = Path(folder) / "notes.txt"
        notes.write_text("trained on the synthetic world\n")
        mlflow.log_artifact(str(notes))
        mlflow.log_artifact(str(notes), artifact_path="docs")
    model = Ridge(alpha=0.5).fit(X, y)
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=model_name,
        pip_requirements=["scikit-learn"],
        serialization_format="cloudpickle",  # the default (skops) needs the skops package
    )
    with mlflow.start_run(run_name="fold-1", nested=True) as child:
        mlflow.log_metric("fold_mape", 0.2)

# The registered model, back from the workspace through the artifact proxy.
reloaded = mlflow.pyfunc.load_model(f"models:/{model_name}/{info.registered_model_version}")
match = bool(np.allclose(reloaded.predict(X[:3]), model.predict(X[:3])))

client = mlflow.MlflowClient()
found = mlflow.search_runs(
    experiment_ids=[run.info.experiment_id],
    filter_string="metrics.MAPE < 0.5 and tags.team = 'eu'",
    order_by=["metrics.MAPE ASC"],
    output_format="list",
)
history = client.get_metric_history(run.info.run_id, "train_loss")
print(
    json.dumps(
        {
            "run_id": run.info.run_id,
            "child_id": child.info.run_id,
            "experiment_id": run.info.experiment_id,
            "status": client.get_run(run.info.run_id).info.status,
            "model_id": info.model_id,
            "registered_version": info.registered_model_version,
            "found": [r.info.run_id for r in found],
            "history": [[m.step, m.value] for m in history],
            "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
            "reloaded_predictions_match": match,
        }
    )
)
