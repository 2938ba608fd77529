from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from assistant.api import ChatConversationView, ChatView
from experiments.api import ExperimentViewSet
from mlflow_api.export_api import RunExportView
from mlworkspace import health, metrics
from models_registry.api import MLModelViewSet
from monitoring.api import (
    ComparisonDetailView,
    ModelBatchesView,
    ModelCompareView,
    ModelMonitoringCheckView,
    ModelMonitoringView,
    ModelOutcomesView,
    ModelPredictionsView,
    ModelRetrainsView,
)
from notifications.api import WebhookViewSet
from recipes.api import ManifestValidateViewSet, RecipeViewSet
from recipes.client_api import ClientDetailView, ClientListView, ClientMembersView, ClientMemberView
from runs.api import DatasetViewSet, RunViewSet
from runs.tuning_api import RunStudySaveBestView, RunStudyView


class Router(DefaultRouter):
    """The spec's paths work exactly as written (no trailing slash) and with one."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


class FaviconView(RedirectView):
    """/favicon.ico, which browsers request on pages that link no icon (the admin, the browsable
    API): the static file, under its (possibly hashed) static URL, resolved per request."""

    permanent = False

    def get_redirect_url(self, *args, **kwargs):
        return static("favicon.ico")


router = Router()
router.register("recipes", RecipeViewSet, basename="recipe")
router.register("models", MLModelViewSet, basename="model")
router.register("runs", RunViewSet, basename="run")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("manifest/validate", ManifestValidateViewSet, basename="manifest-validate")
router.register("webhooks", WebhookViewSet, basename="webhook")
router.register("experiments", ExperimentViewSet, basename="experiment")

api_patterns = [
    re_path(
        r"^models/(?P<model_id>[^/]+)/monitoring/check/?$",
        ModelMonitoringCheckView.as_view(),
        name="model-monitoring-check",
    ),
    re_path(
        r"^models/(?P<model_id>[^/]+)/monitoring/?$", ModelMonitoringView.as_view(), name="model-monitoring"
    ),
    re_path(r"^models/(?P<model_id>[^/]+)/batches/?$", ModelBatchesView.as_view(), name="model-batches"),
    re_path(
        r"^models/(?P<model_id>[^/]+)/predictions/?$",
        ModelPredictionsView.as_view(),
        name="model-predictions",
    ),
    re_path(r"^models/(?P<model_id>[^/]+)/outcomes/?$", ModelOutcomesView.as_view(), name="model-outcomes"),
    re_path(r"^models/(?P<model_id>[^/]+)/retrains/?$", ModelRetrainsView.as_view(), name="model-retrains"),
    re_path(r"^models/(?P<model_id>[^/]+)/compare/?$", ModelCompareView.as_view(), name="model-compare"),
    re_path(r"^comparisons/(?P<comparison_id>[^/]+)/?$", ComparisonDetailView.as_view(), name="comparison"),
    re_path(r"^clients/?$", ClientListView.as_view(), name="clients"),
    re_path(r"^clients/(?P<client_id>[^/]+)/?$", ClientDetailView.as_view(), name="client"),
    re_path(r"^clients/(?P<client_id>[^/]+)/members/?$", ClientMembersView.as_view(), name="client-members"),
    re_path(
        r"^clients/(?P<client_id>[^/]+)/members/(?P<username>[^/]+)/?$",
        ClientMemberView.as_view(),
        name="client-member",
    ),
    re_path(r"^chat/?$", ChatView.as_view(), name="chat"),
    # A tune run's study and "save best as new version" (runs/tuning_api.py).
    re_path(r"^runs/(?P<run_id>[^/]+)/study/?$", RunStudyView.as_view(), name="run-study"),
    re_path(
        r"^runs/(?P<run_id>[^/]+)/study/save-best/?$",
        RunStudySaveBestView.as_view(),
        name="run-study-save-best",
    ),
    path("", include("audit.urls")),  # GET audit
    re_path(r"^chat/(?P<conversation_id>[^/]+)/?$", ChatConversationView.as_view(), name="chat-conversation"),
    # An MLflow export of one run (mlflow_api); before the router, whose runs/{id} it extends.
    re_path(r"^runs/(?P<run_id>[^/]+)/export/?$", RunExportView.as_view(), name="run-export"),
    *router.urls,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/ml-development/", include(api_patterns)),
    # The MLflow-compatible tracking API: MLFLOW_TRACKING_URI=http://<host>/mlflow (mlflow_api).
    path("mlflow/", include("mlflow_api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The template adds the CSP nonce to drf-spectacular's inline <style> and init <script>.
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="swagger-ui",
    ),
    path("api-auth/", include("rest_framework.urls")),
    path("favicon.ico", FaviconView.as_view(), name="favicon"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("", include("mlworkspace.pages")),  # HTML pages + login/logout
]

# No /media/ URL, whatever DEBUG is: dataset files, artifacts and predictions are served only
# by permission-checked views (GET /datasets/{id}/download, /runs/{id}/artifacts/{name}).
