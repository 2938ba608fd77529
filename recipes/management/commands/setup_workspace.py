"""Groups with the right permissions, and a first login (printed) — idempotent."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

WRITE_MODELS = ["recipe", "recipetag", "recipeversion", "mlmodel", "run", "dataset", "monitorsnapshot"]
GROUPS = {
    # Data scientists create recipes, versions, models and runs.
    "Data scientists": [f"{action}_{model}" for model in WRITE_MODELS for action in ("add", "change", "view")]
    + ["delete_dataset"],  # the service refuses a dataset still in use
    # Leads also approve versions.
    "Leads": [f"{action}_{model}" for model in WRITE_MODELS for action in ("add", "change", "view")]
    + ["approve_recipeversion", "delete_dataset"],
    # Workspace admins create clients and decide who is in each client's team
    # (recipes.access.can_manage_clients); seeing a client's data still needs membership.
    "Workspace admins": ["manage_clients"]
    + [
        f"{action}_{model}"
        for model in ("client", "clientmembership")
        for action in ("add", "change", "delete", "view")
    ],
}


def ensure_groups() -> dict[str, Group]:
    groups = {}
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(Permission.objects.filter(codename__in=codenames))
        groups[name] = group
    return groups


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
