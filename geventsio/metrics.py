"""Counters a person can read or scrape: ``sio.stats()`` and a Prometheus text page.

The counters are plain integer attributes bumped where the data already flows
(the Engine.IO session's queue and flush, the WebSocket reader, the polling
handlers, the servers' connect and close paths). gevent runs one greenlet at a
time, so ``+=`` needs no lock. Everything that can be computed from state the
servers keep anyway (clients per namespace, sessions per transport) is
computed when someone asks, not maintained on the data path.

This module imports nothing from the rest of geventsio: the engine layer owns
a ``Counters`` instance without knowing about Socket.IO.
"""

from __future__ import annotations

import time
from typing import Any, Iterable


class Counters:
    """Monotonic counts (and one high-water mark) of one Engine.IO server and the Socket.IO server on it.

    Engine.IO packets and bytes are counted as the transports carry them:
    bytes are those of WebSocket messages (frame headers included) and of
    long-polling HTTP bodies; control frames of the WebSocket itself are not
    counted.
    """

    __slots__ = (
        "started", "packets_in", "packets_out", "bytes_in", "bytes_out", "handshakes",
        "queued_bytes_peak", "engine_closes", "connects", "connect_refusals", "disconnects",
        "ack_timeouts",
    )

    def __init__(self) -> None:
        self.started = time.time()
        self.packets_in = 0
        self.packets_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.handshakes = 0  # Engine.IO sessions opened
        self.queued_bytes_peak = 0  # the most unsent data one session ever had queued
        self.engine_closes: dict[str, int] = {}  # Engine.IO session closes by reason
        self.connects: dict[str, int] = {}  # Socket.IO namespace connections accepted, by namespace
        self.connect_refusals: dict[str, int] = {}  # ... and refused, by namespace
        self.disconnects: dict[str, int] = {}  # Socket.IO disconnects by reason (as handlers get it)
        self.ack_timeouts = 0  # acknowledgements the server waited for in vain

    def count(self, table: dict[str, int], key: str) -> None:
        """Add one to ``table[key]`` (for the per-reason and per-namespace tables)."""
        table[key] = table.get(key, 0) + 1

    def note_queue(self, queued: int) -> None:
        if queued > self.queued_bytes_peak:
            self.queued_bytes_peak = queued


def engine_stats(eio: Any) -> dict[str, Any]:
    """The Engine.IO part of ``stats()``: counters, and sessions by transport right now."""
    c: Counters = eio.counters
    by_transport = {"polling": 0, "websocket": 0}
    for session in eio.sessions.values():
        transport = eio.transport(session.sid)
        if transport is not None:
            by_transport[transport] += 1
    return {
        "uptime": time.time() - c.started,
        "sessions": sum(by_transport.values()),
        "sessions_by_transport": by_transport,
        "handshakes": c.handshakes,
        "packets_in": c.packets_in,
        "packets_out": c.packets_out,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "queued_bytes_high_water": c.queued_bytes_peak,
        "closes_by_reason": dict(c.engine_closes),
    }


def server_stats(sio: Any) -> dict[str, Any]:
    """What ``geventsio.Server.stats()`` returns; see its docstring."""
    stats = engine_stats(sio.eio)
    c: Counters = sio.eio.counters
    stats.update({
        "clients_by_namespace": {nsp: len(adapter.sockets) for nsp, adapter in sorted(sio.adapters.items())},
        "connects_by_namespace": dict(c.connects),
        "connect_refusals_by_namespace": dict(c.connect_refusals),
        "disconnects_by_reason": dict(c.disconnects),
        "ack_timeouts": c.ack_timeouts,
    })
    cluster_stats = getattr(sio.client_manager, "cluster_stats", None)
    if cluster_stats is not None:  # RedisStreamsManager: stream_gaps, stream_entries_missed
        stats.update(cluster_stats())
    return stats


# -- Prometheus text exposition format 0.0.4 ------------------------------------

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str,
            samples: Iterable[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")
    return lines


def prometheus_text(stats: dict[str, Any]) -> str:
    """Render a ``stats()`` dict (Engine.IO-only ones too) as Prometheus text format 0.0.4."""
    p = "geventsio_"
    out: list[str] = []
    out += _family(p + "uptime_seconds", "gauge", "Seconds since the server started.",
                   [({}, round(stats["uptime"], 3))])
    out += _family(p + "engineio_sessions", "gauge", "Open Engine.IO sessions by transport.",
                   [({"transport": t}, n) for t, n in sorted(stats["sessions_by_transport"].items())])
    out += _family(p + "engineio_handshakes_total", "counter", "Engine.IO sessions opened.",
                   [({}, stats["handshakes"])])
    out += _family(p + "engineio_packets_total", "counter", "Engine.IO packets carried, by direction.",
                   [({"direction": "in"}, stats["packets_in"]), ({"direction": "out"}, stats["packets_out"])])
    out += _family(p + "engineio_bytes_total", "counter",
                   "Bytes of WebSocket messages and polling bodies, by direction.",
                   [({"direction": "in"}, stats["bytes_in"]), ({"direction": "out"}, stats["bytes_out"])])
    out += _family(p + "engineio_queued_bytes_high_water", "gauge",
                   "The most unsent data one session has had queued.",
                   [({}, stats["queued_bytes_high_water"])])
    out += _family(p + "engineio_closes_total", "counter", "Engine.IO sessions closed, by reason.",
                   [({"reason": r}, n) for r, n in sorted(stats["closes_by_reason"].items())])
    if "clients_by_namespace" in stats:
        out += _family(p + "socketio_clients", "gauge", "Clients connected, by namespace.",
                       [({"namespace": ns}, n) for ns, n in sorted(stats["clients_by_namespace"].items())])
        out += _family(p + "socketio_connects_total", "counter", "Namespace connections accepted.",
                       [({"namespace": ns}, n) for ns, n in sorted(stats["connects_by_namespace"].items())])
        out += _family(p + "socketio_connect_refusals_total", "counter", "Namespace connections refused.",
                       [({"namespace": ns}, n)
                        for ns, n in sorted(stats["connect_refusals_by_namespace"].items())])
        out += _family(p + "socketio_disconnects_total", "counter", "Namespace disconnections, by reason.",
                       [({"reason": r}, n) for r, n in sorted(stats["disconnects_by_reason"].items())])
        out += _family(p + "socketio_ack_timeouts_total", "counter",
                       "Acknowledgements the server waited for in vain.", [({}, stats["ack_timeouts"])])
    if "stream_gaps" in stats:
        out += _family(p + "redis_stream_gaps_total", "counter",
                       "Times the stream reader found entries trimmed before it read them.",
                       [({}, stats["stream_gaps"])])
        out += _family(p + "redis_stream_entries_missed_total", "counter",
                       "Stream entries trimmed before the reader read them (counted with Redis 7+).",
                       [({}, stats["stream_entries_missed"])])
    return "\n".join(out) + "\n"


def stats_of(server: Any) -> dict[str, Any]:
    """``stats()`` of a ``geventsio.Server`` or of a bare ``geventsio.engine.Server``."""
    if hasattr(server, "eio"):
        return server_stats(server)
    return engine_stats(server)


__all__ = ["Counters", "PROMETHEUS_CONTENT_TYPE", "engine_stats", "prometheus_text", "server_stats",
           "stats_of"]
