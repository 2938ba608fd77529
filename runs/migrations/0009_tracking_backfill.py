"""Index the runs of before issue #15: each run's params (runs.tracking.workspace_params) and
its final numeric metrics (step 0, at the run's end) as tracking rows, so a search finds
them like new runs."""

from django.db import migrations

CHUNK = 500


def backfill(apps, schema_editor):
    from runs import tracking

    Run = apps.get_model("runs", "Run")
    RunParam = apps.get_model("runs", "RunParam")
    RunMetric = apps.get_model("runs", "RunMetric")
    MetricPoint = apps.get_model("runs", "MetricPoint")
    runs = Run.objects.order_by("pk").select_related("recipe_version")
    last = ""
    while True:
        chunk = list(runs.filter(pk__gt=last)[:CHUNK])
        if not chunk:
            return
        params, metrics, points = [], [], []
        for run in chunk:
            values = tracking.workspace_params(run.params_json or {}, run.recipe_version.manifest or {})
            params += [RunParam(run=run, key=k, value=v, value_num=tracking.as_number(v)) for k, v in values.items()]
            at = run.finished_at or run.updated_at or run.created_at
            ms = int(at.timestamp() * 1000)
            for key, value in tracking.numeric_metrics(run.metrics_json or {}):
                metrics.append(RunMetric(run=run, key=key, value=value, step=0, timestamp=ms))
                points.append(MetricPoint(run=run, key=key, value=value, step=0, timestamp=ms))
        RunParam.objects.bulk_create(params, ignore_conflicts=True)
        RunMetric.objects.bulk_create(metrics, ignore_conflicts=True)
        MetricPoint.objects.bulk_create(points)
        last = chunk[-1].pk


class Migration(migrations.Migration):
    dependencies = [("runs", "0008_tracking")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
