"""The Engine.IO v4 layer: sessions, transports and the pure packet codec."""

from .server import Server

__all__ = ["Server"]
