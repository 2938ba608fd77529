"""`manage.py migrate_storage`: copy a local installation's files into the object store.

For an installation that kept its files in the local media folder and now sets
AWS_STORAGE_BUCKET_NAME (mlworkspace.storage). The database says which files exist and what
their bytes must be: each dataset's file (Dataset.sha256) and each file in a run's
artifacts_json. Each is checked against that sha256 in the local folder before it is stored
(a damaged copy must not become the only copy), stored under the same name, then read back
from the store and checked again. A file already in the store with the right sha256 is left
alone, so the command can be run again after a failure and then copies only what is missing.
Local files are never deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mlworkspace import storage
from mlworkspace.errors import Conflict, NotFound
from runs import artifacts
from runs.models import Dataset, Run

COPIED, THERE, PROBLEM = "copied", "there", "problem"


@dataclass(frozen=True)
class Recorded:
    owner: str  # "dataset <id>" / "run <id>", for the output lines
    name: str  # its name in the store
    sha256: str


def recorded_files() -> Iterator[Recorded]:
    """Every file the database records, read in chunks so a large installation's rows are
    never all in memory at once."""
    datasets = Dataset.objects.only("id", "file", "sha256").order_by("pk")
    for dataset in datasets.iterator(chunk_size=500):
        yield Recorded(f"dataset {dataset.pk}", dataset.file.name or "", dataset.sha256 or "")
    runs = Run.objects.only("id", "artifacts_json").order_by("pk")
    for run in runs.iterator(chunk_size=200):
        files = (run.artifacts_json or {}).get("files") if isinstance(run.artifacts_json, dict) else None
        for artifact, entry in sorted((files or {}).items()):
            sha256 = entry.get("sha256") if isinstance(entry, dict) else None
            yield Recorded(f"run {run.pk}", f"{artifacts.folder(run.pk)}/{artifact}", sha256 or "")


class Missing(str):
    """A destination problem that is only the object's absence (the usual case before a copy)."""


def destination_problem(name: str, sha256: str, scratch: Path) -> str | None:
    """None when the store holds `name` with `sha256`; otherwise what is wrong, in words (a
    Missing when it is simply not there). The check reads the object back (storage.fetch checks
    the sha256): an S3 ETag is not a sha256."""
    copy = scratch / "check"
    try:
        storage.fetch(name, sha256, copy, what=f"'{name}'")
    except NotFound as exc:
        return Missing(exc.detail)
    except Conflict as exc:
        return exc.detail
    except storage.StorageError as exc:
        return str(exc)
    except Exception as exc:  # the S3 client's own errors (an unreachable endpoint, a refused key)
        return f"could not read '{name}' from the store: {type(exc).__name__}: {exc}"
    finally:
        copy.unlink(missing_ok=True)
    return None


class Command(BaseCommand):
    help = (
        "Copy the files of a local installation (datasets and run artifacts, as the database "
        "records them) into the configured object store (AWS_STORAGE_BUCKET_NAME), checking each "
        "file's sha256 before uploading and again after reading it back. Files already in the "
        "store with the right sha256 are skipped, so it is safe to run again. The local files are "
        "NOT deleted: remove them yourself once a --verify-only run reports no problems. The "
        "summary's bytes are those copied (or, with --dry-run, that would be)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--from",
            dest="source",
            metavar="PATH",
            help="the local folder holding datasets/ and artifacts/ (default: MEDIA_ROOT)",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--dry-run", action="store_true", help="list what would be copied; upload nothing")
        mode.add_argument(
            "--verify-only",
            action="store_true",
            help="only check that every recorded file is in the store with its sha256",
        )

    def handle(self, *args, source=None, dry_run=False, verify_only=False, **options):
        if storage.backend_name() != "s3":
            raise CommandError(
                "nothing to migrate to: set AWS_STORAGE_BUCKET_NAME (and AWS_S3_ENDPOINT_URL, the "
                "keys and region as needed) to the bucket to copy into; without it the file store "
                "is the local folder itself."
            )
        root = Path(source or settings.MEDIA_ROOT)
        if not verify_only and not root.is_dir():
            raise CommandError(f"--from: '{root}' is not a folder")
        self.verbosity = options.get("verbosity", 1)
        counts = {COPIED: 0, THERE: 0, PROBLEM: 0}
        copied_bytes = 0
        scratch = storage.work_dir("migrate")
        try:
            for item in recorded_files():
                outcome, size = self.migrate_one(
                    item, root, scratch, dry_run=dry_run, verify_only=verify_only
                )
                counts[outcome] += 1
                copied_bytes += size
        finally:
            storage.remove(scratch)
        self.stdout.write(
            f"{'would copy' if dry_run else 'copied'} {counts[COPIED]}, already there {counts[THERE]}, "
            f"problems {counts[PROBLEM]} ({copied_bytes} bytes)"
        )
        if counts[PROBLEM]:
            raise CommandError(f"{counts[PROBLEM]} file(s) with problems (listed above)")

    def migrate_one(
        self, item: Recorded, root: Path, scratch: Path, *, dry_run: bool, verify_only: bool
    ) -> tuple[str, int]:
        """(outcome, bytes copied) for one recorded file; problems are written as they are found."""
        try:
            name = storage.clean_name(item.name)
        except ValueError as exc:
            return self.problem(item, str(exc))
        if not item.sha256:
            return self.problem(item, "no sha256 is recorded for it; cannot check it")
        wrong = destination_problem(name, item.sha256, scratch)
        if wrong is None:
            return THERE, 0
        if verify_only:
            return self.problem(item, wrong)
        local = root / name
        try:
            actual, size = storage.sha256_of(local), local.stat().st_size
        except FileNotFoundError:
            return self.problem(item, f"missing from the local folder '{root}'; not uploaded")
        except OSError as exc:
            return self.problem(item, f"the local file cannot be read ({exc}); not uploaded")
        if actual != item.sha256:
            return self.problem(
                item,
                f"the local file's sha256 {actual} is not the recorded {item.sha256}; not uploaded",
            )
        if dry_run:
            self.stdout.write(f"would copy {item.owner}: {name} ({size} bytes)")
            return COPIED, size
        if not isinstance(wrong, Missing):
            self.stdout.write(f"{item.owner}: {name}: replacing the store's copy ({wrong})")
        try:
            storage.put(name, local)
        except storage.StorageError as exc:
            return self.problem(item, f"upload failed: {exc}")
        # Read back through the store, as the workspace will read it.
        after = destination_problem(name, item.sha256, scratch)
        if after is not None:
            return self.problem(item, f"uploaded, but reading it back failed: {after}")
        if self.verbosity >= 2:
            self.stdout.write(f"copied {item.owner}: {name} ({size} bytes)")
        return COPIED, size

    def problem(self, item: Recorded, reason: str) -> tuple[str, int]:
        line = " ".join(f"{item.owner}: {item.name}: {reason}".split())  # one line, whatever the error said
        self.stderr.write(line)
        return PROBLEM, 0
