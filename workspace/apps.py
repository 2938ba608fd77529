from django.apps import AppConfig


class WorkspaceConfig(AppConfig):
    """The cross-app room: the library page, set-up and demo seeding. No domain app imports it."""

    name = "workspace"
