"""The Clients pages: the clients you belong to (all of them for workspace admins), a client's
team and recipes, and — for workspace admins — creating clients and changing the team.
The writes go through recipes.client_services; who may do what is recipes.access."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from mlworkspace.errors import DomainError
from mlworkspace.forms import add_domain_errors

from . import access, client_services
from .models import Client, ClientRole, Recipe


class ClientForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="e.g. Northwind Grocers")
    slug = forms.SlugField(max_length=100, required=False, help_text="Blank: made from the name.")


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=ClientRole.choices, initial=ClientRole.DATA_SCIENTIST)


def _require_manager(request: HttpRequest) -> None:
    if not access.can_manage_clients(request.user):
        raise PermissionDenied("Managing clients needs the Workspace admins group.")


@login_required
@require_http_methods(["GET", "POST"])
def client_list(request: HttpRequest) -> HttpResponse:
    can_manage = access.can_manage_clients(request.user)
    form = ClientForm(request.POST or None)
    status = 200
    if request.method == "POST":
        _require_manager(request)
        if form.is_valid():
            try:
                client = client_services.client_create(
                    user=request.user, name=form.cleaned_data["name"], slug=form.cleaned_data["slug"] or None
                )
            except DomainError as exc:
                add_domain_errors(form, exc)
            else:
                messages.success(request, f"Created the client “{client.name}”. Add its team next.")
                return redirect("pages:client", client_id=client.pk)
        status = 400
    mine = dict(access.member_client_ids(request.user).values_list("client_id", "role"))
    clients = list(access.visible_clients(request.user))
    for c in clients:
        c.my_role = mine.get(c.pk, "")
    context = {"nav": "clients", "clients": clients, "form": form, "can_manage": can_manage}
    return render(request, "recipes/clients.html", context, status=status)


def _client_context(request: HttpRequest, client: Client, member_form: MemberForm | None = None) -> dict:
    memberships = list(client.memberships.select_related("user").order_by("user__username"))
    return {
        "nav": "clients",
        "client": client,
        "memberships": memberships,
        # Only what the viewer may see: members see the client's recipes, admins who are
        # not members see the team but not the data.
        "recipes": list(
            Recipe.objects.visible_to(request.user)
            .filter(client=client)
            .select_related("parent")
            .order_by("name", "id")
        ),
        "is_member": access.can_view(request.user, client),
        "can_manage": access.can_manage_clients(request.user),
        "member_form": member_form or MemberForm(),
        "roles": ClientRole.choices,
    }


@login_required
def client_detail(request: HttpRequest, client_id: str) -> HttpResponse:
    client = get_object_or_404(access.visible_clients(request.user), pk=client_id)
    return render(request, "recipes/client_detail.html", _client_context(request, client))


@login_required
@require_POST
def client_member_set(request: HttpRequest, client_id: str) -> HttpResponse:
    client = get_object_or_404(access.visible_clients(request.user), pk=client_id)
    _require_manager(request)
    form = MemberForm(request.POST)
    if form.is_valid():
        try:
            member = client_services.member_by_username(form.cleaned_data["username"])
            client_services.membership_set(
                user=request.user, client=client, member=member, role=form.cleaned_data["role"]
            )
        except DomainError as exc:
            add_domain_errors(form, exc)
        else:
            role = dict(ClientRole.choices)[form.cleaned_data["role"]].lower()
            messages.success(request, f"{member.get_username()} is now a {role} of {client.name}.")
            return redirect("pages:client", client_id=client.pk)
    return render(request, "recipes/client_detail.html", _client_context(request, client, form), status=400)


@login_required
@require_POST
def client_member_remove(request: HttpRequest, client_id: str, username: str) -> HttpResponse:
    client = get_object_or_404(access.visible_clients(request.user), pk=client_id)
    _require_manager(request)
    try:
        member = client_services.member_by_username(username)
        client_services.membership_remove(user=request.user, client=client, member=member)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Removed {member.get_username()} from {client.name}.")
    return redirect("pages:client", client_id=client.pk)
