"""A Django project with Socket.IO beside its views: see README.md in this folder."""
