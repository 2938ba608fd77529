"""manage.py import_mlflow --recipe <id> (--uri http://… | --mlruns <folder or zip>)
[--experiment <name or id>] [--user <username>]

Imports MLflow runs into a recipe as external runs: params, tags, every metric's full history,
artifacts and status (mlflow_api.transfer.run_import). Runs imported before (the tag
``mlflow.importedRunId``) are skipped, so the command can be run again. From a tracking server
it reads with MLflow's own client (``mlflow-skinny``; its MLFLOW_TRACKING_TOKEN /
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD authenticate); from an ``mlruns`` folder, or
the zip GET /runs/{id}/export?format=mlflow gives, it reads the files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mlworkspace.errors import DomainError
from recipes.models import Recipe

from ... import mlruns, selectors, transfer
from ...protocol import MlflowError

PAGE = 500


class Command(BaseCommand):
    help = "Import MLflow runs (params, metric histories, tags, artifacts) into a recipe."

    def add_arguments(self, parser):
        parser.add_argument("--recipe", required=True, help="the recipe id the runs are imported into")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--uri", help="an MLflow tracking server, e.g. http://mlflow.internal:5000")
        source.add_argument("--mlruns", help="an mlruns folder, or a zip of one (a run export)")
        parser.add_argument(
            "--experiment",
            help="the experiment to import (name or id); default: every experiment of --mlruns, "
            "the experiment named after the recipe id on --uri",
        )
        parser.add_argument("--user", help="the workspace user the runs are created by (default: none)")

    def handle(self, *args, **options):
        recipe = Recipe.objects.filter(pk=options["recipe"]).first()
        if recipe is None:
            raise CommandError(f"No recipe '{options['recipe']}'.")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user '{options['user']}'.")
        imported = skipped = failed = 0
        with tempfile.TemporaryDirectory(prefix="import-mlflow-") as scratch:
            if options["uri"]:
                runs = _server_runs(options["uri"], options["experiment"] or recipe.pk, recipe, Path(scratch))
            else:
                runs = _folder_runs(Path(options["mlruns"]), options["experiment"], Path(scratch))
            for source, files in runs:
                try:
                    run = transfer.run_import(user=user, recipe=recipe, source=source, artifacts=files)
                except (DomainError, MlflowError, OSError) as error:
                    failed += 1
                    message = getattr(error, "detail", None) or getattr(error, "message", None) or str(error)
                    self.stderr.write(f"MLflow run {source.run_id}: not imported: {message}")
                    continue
                if run is None:
                    skipped += 1
                    self.stdout.write(f"MLflow run {source.run_id}: already imported, skipped")
                else:
                    imported += 1
                    self.stdout.write(f"MLflow run {source.run_id}: imported as {run.pk}")
        self.stdout.write(f"{imported} imported, {skipped} skipped, {failed} failed.")
        if failed:
            raise CommandError(f"{failed} run(s) could not be imported (see above).")


def _folder_runs(path: Path, experiment: str | None, scratch: Path) -> Iterator:
    try:
        root = mlruns.extract_zip(path, scratch / "unzipped") if path.is_file() else path
        for source in mlruns.read_runs(root, experiment):
            yield source, list(mlruns.artifact_files(source.artifacts_dir))
    except mlruns.LayoutError as error:
        raise CommandError(str(error)) from None


def _server_runs(uri: str, experiment: str, recipe: Recipe, scratch: Path) -> Iterator:
    """The runs of an MLflow tracking server's experiment, read with MLflow's client (its
    histories page by page, its artifacts downloaded for the runs not imported yet)."""
    try:
        # MLflow's client is a development dependency (requirements-dev.txt): loaded only
        # when a server is imported from, so the workspace runs without it.
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise CommandError(
            "Importing from a tracking server needs MLflow's client: pip install mlflow-skinny"
        ) from None
    client = MlflowClient(tracking_uri=uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None and experiment.isdigit():
            found = client.get_experiment(experiment)
        if found is None:
            raise CommandError(f"{uri} has no experiment '{experiment}'.")
        done = selectors.run_ids_imported(recipe)
        token = None
        while True:
            # Oldest first: a nested run's parent is imported before it (and linked).
            page = client.search_runs(
                [found.experiment_id],
                max_results=PAGE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            for run in page:
                info = run.info
                source = mlruns.SourceRun(
                    run_id=info.run_id,
                    experiment_id=info.experiment_id,
                    run_name=info.run_name or "",
                    status=info.status,
                    start_time=info.start_time,
                    end_time=info.end_time,
                    user_id=info.user_id or "",
                    params=dict(run.data.params),
                    tags=dict(run.data.tags),
                )
                if info.run_id in done:
                    yield source, []
                    continue
                for key in run.data.metrics:
                    history = client.get_metric_history(info.run_id, key)
                    source.metrics[key] = [(m.timestamp, m.value, m.step) for m in history]
                folder = scratch / info.run_id
                folder.mkdir()
                if client.list_artifacts(info.run_id):
                    client.download_artifacts(info.run_id, "", str(folder))
                yield source, list(mlruns.artifact_files(folder))
            token = page.token
            if not token:
                break
    except MlflowException as error:
        raise CommandError(f"{uri}: {error.message}") from None
