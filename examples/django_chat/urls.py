from django.contrib.auth import views as auth_views
from django.urls import path

from .chat import views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("messages/", views.recent_messages, name="messages"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
