"""Clients and their members: `GET/POST /clients`, `GET /clients/{id}`,
`GET/POST /clients/{id}/members`, `DELETE /clients/{id}/members/{username}`.

Reading a client needs membership (or the manage permission); creating clients and
changing members needs `recipes.access.can_manage_clients` (superusers, "Workspace admins")."""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from . import access, client_services
from .models import Client, ClientRole
from .serializers import StrictSerializer


class ClientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Client
        fields = ["id", "name", "slug", "created_at"]


class ClientCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.CharField(max_length=100, required=False, allow_blank=True)


class MemberSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=ClientRole.values)


def _members(client: Client) -> list[dict]:
    return [
        {"username": m.user.get_username(), "role": m.role, "since": m.created_at}
        for m in client.memberships.select_related("user").order_by("user__username")
    ]


def _require_manager(user) -> None:
    if not access.can_manage_clients(user):
        raise PermissionDenied("Managing clients needs the Workspace admins group.")


def _client_for(user, client_id) -> Client:
    """404 unless the user may see the client (a member, or a client manager)."""
    return get_object_or_404(access.visible_clients(user), pk=client_id)


class ClientListView(APIView):
    """GET: the clients you belong to (every client for workspace admins). POST: a new client."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=ClientSerializer(many=True))
    def get(self, request):
        return Response(ClientSerializer(access.visible_clients(request.user), many=True).data)

    @extend_schema(request=ClientCreateSerializer, responses={201: ClientSerializer})
    def post(self, request):
        _require_manager(request.user)
        data = ClientCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        client = client_services.client_create(user=request.user, **data.validated_data)
        return Response(ClientSerializer(client).data, status=status.HTTP_201_CREATED)


class ClientDetailView(APIView):
    """One client with its members and the number of its recipes."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=None)
    def get(self, request, client_id):
        client = _client_for(request.user, client_id)
        return Response(
            {
                **ClientSerializer(client).data,
                "members": _members(client),
                "recipe_count": client.recipes.count(),
            }
        )


class ClientMembersView(APIView):
    """GET: the members and their roles. POST `{"username", "role"}`: add a member or change a role."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=None)
    def get(self, request, client_id):
        return Response(_members(_client_for(request.user, client_id)))

    @extend_schema(request=MemberSerializer, responses=None)
    def post(self, request, client_id):
        client = _client_for(request.user, client_id)
        _require_manager(request.user)
        data = MemberSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = client_services.member_by_username(data.validated_data["username"])
        created = not client.memberships.filter(user=member).exists()
        membership = client_services.membership_set(
            user=request.user, client=client, member=member, role=data.validated_data["role"]
        )
        return Response(
            {"username": member.get_username(), "role": membership.role},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ClientMemberView(APIView):
    """DELETE: remove a member from the client."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={204: None})
    def delete(self, request, client_id, username):
        client = _client_for(request.user, client_id)
        _require_manager(request.user)
        member = client_services.member_by_username(username)
        client_services.membership_remove(user=request.user, client=client, member=member)
        return Response(status=status.HTTP_204_NO_CONTENT)
