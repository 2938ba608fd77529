"""The HTML pages (server-rendered, HTMX): included at the site root by mlworkspace/urls.py.

Every page URL serves both the full page and, for HTMX requests, the fragment it swaps;
the live parts of a run (progress, logs) and the editor's validation have their own small
URLs because they are polled or posted on their own.
"""

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from assistant import views as assistant_views
from experiments import views as experiment_views
from models_registry import comparison_views
from models_registry import views as model_views
from notifications import views as notification_views
from recipes import client_views
from recipes import views as recipe_views
from runs import dataset_views, tuning_views
from runs import views as run_views
from workspace import views as workspace_views

app_name = "pages"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="pages:library", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Library: ?tab=recipes|models|runs|monitoring plus each tab's filters, sort and page.
    path("model-development/", workspace_views.library, name="library"),
    path("model-development/chat", assistant_views.chat, name="chat"),
    # Recipes
    path("model-development/recipes/<str:recipe_id>", recipe_views.recipe_detail, name="recipe"),
    path(
        "model-development/recipes/<str:recipe_id>/validate",
        recipe_views.manifest_validate,
        name="recipe-validate",
    ),
    path(
        "model-development/recipes/<str:recipe_id>/versions/new",
        recipe_views.version_new,
        name="recipe-version-new",
    ),
    path("model-development/recipes/<str:recipe_id>/diff", recipe_views.version_diff, name="recipe-diff"),
    path(
        "model-development/recipes/<str:recipe_id>/versions/<str:version_id>/approve",
        recipe_views.version_approve,
        name="recipe-approve",
    ),
    path(
        "model-development/recipes/<str:recipe_id>/rebase", recipe_views.recipe_rebase, name="recipe-rebase"
    ),
    path("model-development/recipes/<str:recipe_id>/clone", recipe_views.recipe_clone, name="recipe-clone"),
    path(
        "model-development/recipes/<str:recipe_id>/status", recipe_views.recipe_status, name="recipe-status"
    ),
    # Models
    path("model-development/models/new", model_views.model_register, name="model-new"),
    path("model-development/models/<str:model_id>", model_views.model_detail, name="model"),
    path("model-development/models/<str:model_id>/status", model_views.model_status, name="model-status"),
    path("model-development/models/<str:model_id>/check", model_views.model_check, name="model-check"),
    path("model-development/models/<str:model_id>/retrain", model_views.model_retrain, name="model-retrain"),
    path("model-development/models/<str:model_id>/explain", model_views.model_explain, name="model-explain"),
    path(
        "model-development/models/<str:model_id>/compare",
        comparison_views.model_compare,
        name="model-compare",
    ),
    path(
        "model-development/comparisons/<str:comparison_id>",
        comparison_views.comparison_detail,
        name="comparison",
    ),
    # Experiments: A/B and shadow tests on a recipe's production model.
    path(
        "model-development/models/<str:model_id>/experiments/new",
        experiment_views.experiment_new,
        name="experiment-new",
    ),
    path(
        "model-development/experiments/<str:experiment_id>",
        experiment_views.experiment_detail,
        name="experiment",
    ),
    path(
        "model-development/experiments/<str:experiment_id>/stop",
        experiment_views.experiment_stop,
        name="experiment-stop",
    ),
    # Runs
    path("model-development/runs/new", run_views.run_new, name="run-new"),
    path("model-development/runs/compare", run_views.run_compare, name="run-compare"),
    path("model-development/runs/<str:run_id>", run_views.run_detail, name="run"),
    path("model-development/runs/<str:run_id>/live", run_views.run_live, name="run-live"),
    path("model-development/runs/<str:run_id>/curves", run_views.run_curves, name="run-curves"),
    path("model-development/runs/<str:run_id>/logs", run_views.run_logs, name="run-logs"),
    path("model-development/runs/<str:run_id>/cancel", run_views.run_cancel, name="run-cancel"),
    path("model-development/runs/<str:run_id>/retry", run_views.run_retry, name="run-retry"),
    # A tune run's study (runs/tuning_views.py) and its "Save best as new version".
    path("model-development/runs/<str:run_id>/study", tuning_views.run_study, name="run-study"),
    path(
        "model-development/runs/<str:run_id>/study/save-best",
        tuning_views.run_study_save_best,
        name="run-study-save-best",
    ),
    # Clients: list + create (workspace admins), a client's team and recipes.
    path("model-development/clients/", client_views.client_list, name="clients"),
    path("model-development/clients/<str:client_id>", client_views.client_detail, name="client"),
    path(
        "model-development/clients/<str:client_id>/members",
        client_views.client_member_set,
        name="client-members",
    ),
    path(
        "model-development/clients/<str:client_id>/members/<str:username>/remove",
        client_views.client_member_remove,
        name="client-member-remove",
    ),
    # Notifications: webhooks (create, send test, rotate the secret, edit, delete, the delivery
    # log) and the user's own e-mail subscriptions.
    path("model-development/notifications", notification_views.notifications, name="notifications"),
    path(
        "model-development/notifications/subscriptions",
        notification_views.subscription_set,
        name="notification-subscribe",
    ),
    path(
        "model-development/notifications/subscriptions/<str:subscription_id>/delete",
        notification_views.subscription_delete,
        name="notification-unsubscribe",
    ),
    path(
        "model-development/notifications/webhooks/<str:webhook_id>",
        notification_views.webhook_detail,
        name="webhook",
    ),
    path(
        "model-development/notifications/webhooks/<str:webhook_id>/test",
        notification_views.webhook_test,
        name="webhook-test",
    ),
    path(
        "model-development/notifications/webhooks/<str:webhook_id>/rotate",
        notification_views.webhook_rotate,
        name="webhook-rotate",
    ),
    path(
        "model-development/notifications/webhooks/<str:webhook_id>/delete",
        notification_views.webhook_delete,
        name="webhook-delete",
    ),
    # Datasets: list + upload, a dataset's page (?recipe= checks it against a recipe), delete.
    path("model-development/datasets", dataset_views.dataset_list, name="datasets"),
    path("model-development/datasets/<str:dataset_id>", dataset_views.dataset_detail, name="dataset"),
    path(
        "model-development/datasets/<str:dataset_id>/delete",
        dataset_views.dataset_delete,
        name="dataset-delete",
    ),
]
