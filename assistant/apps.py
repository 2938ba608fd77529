from django.apps import AppConfig


class AssistantConfig(AppConfig):
    """The chat assistant: conversations, the reply service, nlu/ (pure) and knowledge/."""

    name = "assistant"
    default_auto_field = "django.db.models.BigAutoField"
