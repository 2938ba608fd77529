from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class MlworkspaceConfig(AppConfig):
    name = "mlworkspace"

    def ready(self):
        checks.register(check_production_settings, checks.Tags.security)


def check_production_settings(app_configs, **kwargs):
    errors = []
    if not settings.DEBUG and (not settings.SECRET_KEY or settings.SECRET_KEY.startswith("dev-insecure")):
        errors.append(
            checks.Error(
                "SECRET_KEY must be set when DEBUG is off.",
                id="mlworkspace.E001",
                hint="export SECRET_KEY=...",
            )
        )
    return errors
