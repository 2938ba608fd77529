"""The chat box of the chat page. It only checks the shape of the input; what the message
means is the reply service's job (assistant.services)."""

from django import forms
from django.conf import settings


class ChatForm(forms.Form):
    message = forms.CharField(
        max_length=settings.CHAT_MAX_MESSAGE_CHARS,
        strip=True,
        widget=forms.Textarea(
            attrs={
                "rows": 3,
                "placeholder": "Describe the model you need: what to predict or decide, for whom, how often",
            }
        ),
    )
    conversation_id = forms.CharField(required=False, widget=forms.HiddenInput)
