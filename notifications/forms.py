"""Forms of the Notifications page: a webhook (create, edit) and an e-mail subscription.

A scope is one select: ``firm``, ``client:<id>`` or ``recipe:<id>``, offered only where the
user may create it (notifications.scopes), so a forged value is a form error."""

from __future__ import annotations

from django import forms

from recipes import access
from recipes.models import Client, Recipe

from . import events as ev
from . import scopes

FIRM = "firm"
EVENT_CHOICES = [(name, f"{name} — {ev.EVENTS[name]}") for name in ev.SUBSCRIBABLE]


def scope_value(client_id: str | None = None, recipe_id: str | None = None) -> str:
    if client_id:
        return f"client:{client_id}"
    if recipe_id:
        return f"recipe:{recipe_id}"
    return FIRM


def _recipe_label(recipe: Recipe) -> str:
    return f"{recipe.name} ({recipe.client.name})" if recipe.client_id else f"{recipe.name} ({recipe.level})"


def scope_choices(*, firm: bool, clients, recipes) -> list:
    """Grouped choices for a scope select, starting with none: a scope (firm-wide above all)
    is picked on purpose, never by default."""
    choices = [("", "— pick a scope —")]
    if firm:
        choices.append((FIRM, "Firm-wide: every recipe of every client"))
    clients = [(scope_value(client_id=c.pk), f"Client: {c.name} (all its recipes)") for c in clients]
    if clients:
        choices.append(("Clients", clients))
    recipes = [(scope_value(recipe_id=r.pk), _recipe_label(r)) for r in recipes]
    if recipes:
        choices.append(("Recipes", recipes))
    return choices


def webhook_scope_choices(user) -> list:
    return scope_choices(
        firm=scopes.can_manage_scope(user),
        clients=scopes.clients_managed(user).order_by("name", "id"),
        recipes=scopes.recipes_managed(user).select_related("client").order_by("name", "id"),
    )


def subscription_scope_choices(user) -> list:
    return scope_choices(
        firm=scopes.can_subscribe(user),
        # Clients one may see the recipes of (recipes.access): members, and superusers all.
        clients=(
            Client.objects.all()
            if user.is_superuser
            else Client.objects.filter(pk__in=access.member_client_ids(user))
        ).order_by("name", "id"),
        recipes=Recipe.objects.visible_to(user).select_related("client").order_by("name", "id"),
    )


def resolve_scope(value: str) -> tuple[Client | None, Recipe | None]:
    """The client or recipe of a validated scope value (it came from the choices)."""
    kind, _, pk = value.partition(":")
    if kind == "client":
        return Client.objects.get(pk=pk), None
    if kind == "recipe":
        return None, Recipe.objects.get(pk=pk)
    return None, None


class EventsField(forms.MultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "None ticked: every event.")
        super().__init__(choices=EVENT_CHOICES, **kwargs)


class WebhookForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="e.g. Team Slack relay")
    url = forms.CharField(
        label="URL", max_length=2000, help_text="http:// or https://; receives a signed JSON POST per event."
    )
    scope = forms.ChoiceField(help_text="Which recipes' events it receives.")
    events = EventsField()

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["scope"].choices = webhook_scope_choices(user)

    @property
    def has_scopes(self) -> bool:
        return len(self.fields["scope"].choices) > 1  # more than the empty choice


class WebhookEditForm(forms.Form):
    name = forms.CharField(max_length=200)
    url = forms.CharField(label="URL", max_length=2000)
    events = EventsField()
    active = forms.BooleanField(required=False, help_text="Unticked: no new deliveries, none retried.")


class SubscriptionForm(forms.Form):
    scope = forms.ChoiceField(help_text="E-mail the events of these recipes to you.")
    events = EventsField()

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["scope"].choices = subscription_scope_choices(user)
