"""The workspace's permission groups: what each kind of user may do (`setup_workspace`
creates them; the tests' `groups` fixture too). The one place they are defined."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

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
    """Create or update the groups with exactly their permissions (idempotent)."""
    groups = {}
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(Permission.objects.filter(codename__in=codenames))
        groups[name] = group
    return groups
