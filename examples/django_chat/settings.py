"""Settings of the example: a minimal Django project with auth, sessions and one app.

Environment variables: ``DJANGO_CHAT_DB`` (the SQLite file; tests point it at a
temporary folder), ``DJANGO_CHAT_SECRET_KEY``, ``DJANGO_CHAT_DEBUG=1``,
``DJANGO_CHAT_ALLOWED_HOSTS`` (comma-separated).
"""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

# A fixed key is fine for a local demo only: set DJANGO_CHAT_SECRET_KEY anywhere else.
SECRET_KEY = os.environ.get("DJANGO_CHAT_SECRET_KEY", "django-chat-example-not-secret")
DEBUG = os.environ.get("DJANGO_CHAT_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_CHAT_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "examples.django_chat.chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "examples.django_chat.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_CHAT_DB", str(HERE / "db.sqlite3")),
    }
}

# The session cookie is what authenticates the Socket.IO connection too
# (examples/django_chat/sockets.py). HttpOnly stays on: the browser sends it
# with the Socket.IO handshake without any script reading it.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"geventsio": {"handlers": ["stderr"], "level": "INFO"}},
}
