from django.contrib import admin

from mlworkspace.admin_utils import ClientScopedAdmin

from .models import ChatMessage, Conversation


class ChatMessageInline(admin.TabularInline):
    model = ChatMessage
    fields = ["role", "content", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(ClientScopedAdmin, admin.ModelAdmin):
    client_path = "created_recipe__client"
    list_display = ["id", "user", "title", "created_recipe", "updated_at"]
    search_fields = ["id", "title", "user__username"]
    readonly_fields = ["id", "user", "title", "state_json", "created_recipe", "created_at", "updated_at"]
    inlines = [ChatMessageInline]

    def has_add_permission(self, request):
        return False
