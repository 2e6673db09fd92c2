"""Plain Django views: they run beside Socket.IO, untouched by it."""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render

from .models import Message

RECENT = 50  # messages shown when the page loads


def recent_lines() -> list[str]:
    messages = Message.objects.select_related("user")[:RECENT]
    return [m.line() for m in reversed(messages)]


@login_required
def chat_page(request):
    return render(request, "chat/chat.html", {"lines": recent_lines()})


@login_required
def recent_messages(request):
    """``{"user": name, "messages": ["user: text", ...]}``, oldest first."""
    return JsonResponse({"user": request.user.get_username(), "messages": recent_lines()})
