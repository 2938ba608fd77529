from django.apps import AppConfig


class MlflowApiConfig(AppConfig):
    name = "mlflow_api"
    verbose_name = "MLflow-compatible tracking API"
    default_auto_field = "django.db.models.BigAutoField"
