"""Groups with the right permissions, and a first login (printed) — idempotent."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from workspace.groups import ensure_groups


class Command(BaseCommand):
    help = "Create the Data scientists / Leads groups and an admin login (printed)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, **options):
        groups = ensure_groups()
        User = get_user_model()
        username = options["username"]
        login_file = settings.DATA_DIR / "login.txt"
        user = User.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(9)
            user = User.objects.create_superuser(username=username, email="", password=password)
            user.groups.add(groups["Leads"])
            login_file.write_text(f"{username} {password}\n")
            login_file.chmod(0o600)
        if login_file.exists():
            name, password = login_file.read_text().split()
            self.stdout.write(self.style.SUCCESS(f"Login: {name} / {password}   (stored in {login_file})"))
        else:
            self.stdout.write(
                f"Login: {username} (password set earlier; reset with manage.py changepassword {username})"
            )
