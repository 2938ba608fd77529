"""manage.py import_mlflow --recipe <id> (--uri http://… | --mlruns <folder or zip>)
[--experiment <name or id>] [--user <username>]

Imports MLflow runs into a recipe as external runs: params, tags, every metric's full history,
artifacts and status (mlflow_api.transfer.run_import). Runs imported before (the tag
``mlflow.importedRunId``) are skipped, so the command can be run again. From a tracking server
it reads MLflow's REST protocol with the standard library (mlflow_api.remote: no MLflow package
needed; MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD,
authenticate as with MLflow's client); from an ``mlruns`` folder, or the zip
GET /runs/{id}/export?format=mlflow gives, it reads the files.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mlworkspace.errors import DomainError
from recipes.models import Recipe

from ... import mlruns, remote, selectors, transfer
from ...protocol import MlflowError


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
    """The runs of an MLflow tracking server's experiment, oldest first (mlflow_api.remote): the
    runs not imported yet with every metric's full history and their artifacts downloaded."""
    try:
        server = remote.TrackingServer(uri)
        found = server.experiment_by_name(experiment)
        if found is None and experiment.isdigit():
            found = server.experiment(experiment)
        if found is None:
            raise CommandError(f"{uri} has no experiment '{experiment}'.")
        done = selectors.run_ids_imported(recipe)
        # Oldest first: a nested run's parent is imported before it (and linked).
        for number, run in enumerate(server.search_runs(found["experiment_id"])):
            source = remote.source_run(run)
            if source.run_id in done:
                yield source, []
                continue
            for key in remote.metric_keys(run):
                source.metrics[key] = server.metric_history(source.run_id, key)
            # Numbered, not named after the run id: the server's id is no safe folder name.
            folder = scratch / f"run-{number}"
            folder.mkdir()
            yield source, server.download_artifacts(run, folder)
            # The import has copied the files into the run's own folder by now: free the disk
            # before the next run's artifacts come down.
            shutil.rmtree(folder, ignore_errors=True)
    except (remote.RemoteError, OSError) as error:
        raise CommandError(f"{uri}: {error}") from None
