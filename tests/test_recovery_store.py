"""The recovery store on its own: its options, the rooms and offsets it replays by, its window.

The store's clock is injected and moved by hand; everything else is the real store.
"""

from __future__ import annotations

from typing import Any

import pytest

import geventsio
from geventsio.recovery import InMemoryRecoveryStore, RecoveryOptions
from geventsio.socket import to_frames


def test_options_are_checked():
    assert RecoveryOptions.of(None) is None and RecoveryOptions.of(False) is None
    assert RecoveryOptions.of(True) == RecoveryOptions()
    assert RecoveryOptions.of({"max_disconnection_duration": 5}).max_disconnection_duration == 5
    with pytest.raises(TypeError):
        RecoveryOptions.of({"maxDisconnectionDuration": 5})
    with pytest.raises(ValueError):
        RecoveryOptions.of({"max_buffered_packets": 0})
    with pytest.raises(TypeError):
        geventsio.Server(connection_state_recovery="yes")


class Clock:
    """The store's clock, moved by hand (its expiry timers are the loop's and are not used here)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_store(clock: Clock, **options: Any) -> Any:
    return InMemoryRecoveryStore("/", RecoveryOptions(**options), to_frames, clock)


def test_store_replays_by_rooms_and_offsets():
    store = make_store(Clock())
    first = store.record(["news", 0], frozenset(), frozenset())
    assert first == ['42["news",0,"1"]']
    store.persist("sid1", "pid1", ["sid1", "a"], {"k": 1})
    store.record(["news", 1], frozenset(["a"]), frozenset())
    store.record(["news", 2], frozenset(["b"]), frozenset())
    store.record(["news", 3], frozenset(["a", "b"]), frozenset(["sid1"]))
    store.record(["news", 4], frozenset(["sid1"]), frozenset(["b"]))
    restored = store.restore("pid1", "1")
    assert (restored.sid, restored.pid, restored.rooms, restored.data) == (
        "sid1", "pid1", frozenset(["sid1", "a"]), {"k": 1})
    assert restored.missed == [['42["news",1,"2"]'], ['42["news",4,"5"]']]
    assert store.restore("pid1", "1") is None  # once
    store.close()


def test_store_forgets_what_is_older_than_the_window_even_before_its_timers_fire():
    clock = Clock()
    store = make_store(clock, max_disconnection_duration=60)
    store.record(["news", 0], frozenset(), frozenset())
    store.persist("sid1", "pid1", ["sid1"], {})
    store.record(["news", 1], frozenset(), frozenset())
    clock.now += 61
    assert store.restore("pid1", "1") is None  # the window has passed
    store.persist("sid1", "pid1", ["sid1"], {})
    store.record(["news", 2], frozenset(), frozenset())  # trims news 0 and 1: older than the window
    assert store.restore("pid1", "1") is None  # news 1, missed, is gone
    store.persist("sid2", "pid2", ["sid2"], {})
    assert store.restore("pid2", "3") is not None and store.restore("pid2", "3") is None
    store.persist("sid2", "pid2", ["sid2"], {})
    assert store.restore("pid2", "4") is None  # an offset not given yet
    store.close()
