from django.core.management.base import BaseCommand

from monitoring.scheduler import run_due_checks


class Command(BaseCommand):
    help = (
        "Run the monitoring checks and batch scorings that are due for production models, and check "
        "scored batches (safe with several workers)."
    )

    def handle(self, *args, **options):
        done = run_due_checks()
        self.stdout.write(
            f"{len(done)} scheduled check(s) or scoring(s) done" + (": " + ", ".join(done) if done else "")
        )
