from django.core.management.base import BaseCommand

from monitoring.scheduler import run_due_checks


class Command(BaseCommand):
    help = "Run the monitoring checks that are due for production models (safe with several workers)."

    def handle(self, *args, **options):
        done = run_due_checks()
        self.stdout.write(f"{len(done)} check(s) run" + (": " + ", ".join(done) if done else ""))
