from django.conf import settings
from django.db import models


class Message(models.Model):
    """One chat line, saved by the Socket.IO ``chat`` handler and listed by the HTTP views."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.CharField(max_length=1000)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-sent_at", "-id"]

    def line(self) -> str:
        """What the chat shows: ``"user: text"``."""
        return f"{self.user.get_username()}: {self.text}"
