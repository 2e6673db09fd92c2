"""Exponential back-off with jitter, as a pure function of the attempt number.

The reconnect loop of ``geventsio.Client`` asks ``Backoff.delay(attempt)``
how long to wait before attempt ``attempt + 1``. Nothing here sleeps or keeps
state, so the bounds are unit-testable and a test can check that a real
reconnection happened within them (``Backoff.bounds``).

Compared with socket.io-client's ``backo2`` (``min * 2**n``, then a jitter of
up to ``factor * delay`` either way, then the cap) the cap is applied to the
base before the jitter: clients that have all reached the cap still spread
their attempts over ``[max * (1 - jitter), max]`` instead of all retrying at
exactly ``max``, and no delay ever exceeds ``max``.
"""

from __future__ import annotations

import random
from typing import Callable


class Backoff:
    """Delays ``min * factor**attempt`` capped at ``max``, each spread by ``±jitter``.

    ``attempt`` counts from 0 (the wait before the first reconnection
    attempt). With ``jitter`` 0.5, the delay is uniform in
    ``[base * 0.5, min(base * 1.5, max)]`` where ``base = min(min * factor**attempt, max)``.
    """

    __slots__ = ("min", "max", "factor", "jitter", "_random")

    def __init__(self, min: float = 1.0, max: float = 5.0, jitter: float = 0.5,
                 factor: float = 2.0, random_source: Callable[[], float] = random.random):
        if min < 0 or max < min:
            raise ValueError(f"need 0 <= min <= max, got min={min!r}, max={max!r}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {jitter!r}")
        if factor < 1:
            raise ValueError(f"factor must be at least 1, got {factor!r}")
        self.min = min
        self.max = max
        self.jitter = jitter
        self.factor = factor
        self._random = random_source

    def base(self, attempt: int) -> float:
        """The delay before jitter: ``min * factor**attempt``, capped at ``max``."""
        if attempt < 0:
            raise ValueError("attempt counts from 0")
        delay = float(self.min)
        # Grow step by step: factor**attempt overflows a float for large attempt counts.
        for _ in range(attempt):
            delay *= self.factor
            if delay >= self.max:
                return float(self.max)
        return min(delay, float(self.max))

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay ``delay(attempt)`` can return."""
        base = self.base(attempt)
        return base * (1 - self.jitter), min(base * (1 + self.jitter), float(self.max))

    def delay(self, attempt: int, r: float | None = None) -> float:
        """The wait before attempt ``attempt + 1``; ``r`` in [0, 1) replaces the random draw."""
        if r is None:
            r = self._random()
        base = self.base(attempt)
        return min(base * (1 + self.jitter * (2 * r - 1)), float(self.max))
