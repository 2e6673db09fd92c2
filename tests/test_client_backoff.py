"""Unit tests of ``geventsio.client.backoff.Backoff``: growth, cap, jitter bounds (pure, no I/O)."""

from __future__ import annotations

import random

import pytest

from geventsio.client.backoff import Backoff


def test_without_jitter_the_delay_doubles_from_min_up_to_max():
    b = Backoff(min=1, max=5, jitter=0)
    assert [b.delay(n) for n in range(6)] == [1, 2, 4, 5, 5, 5]
    assert [b.base(n) for n in range(4)] == [1, 2, 4, 5]


def test_growth_follows_the_factor():
    b = Backoff(min=0.1, max=100, jitter=0, factor=3)
    assert [round(b.delay(n), 6) for n in range(4)] == [0.1, 0.3, 0.9, 2.7]


def test_jitter_bounds_are_the_extremes_of_the_random_draw():
    b = Backoff(min=1, max=5, jitter=0.5)
    assert b.bounds(0) == (0.5, 1.5)
    assert b.bounds(1) == (1.0, 3.0)
    assert b.bounds(2) == (2.0, 5.0)  # 4 * 1.5 is capped
    assert b.bounds(10) == (2.5, 5.0)
    for n in range(6):
        lo, hi = b.bounds(n)
        assert b.delay(n, r=0.0) == pytest.approx(lo)
        assert b.delay(n, r=0.5) == pytest.approx(b.base(n))
        assert b.delay(n, r=0.999999) == pytest.approx(hi, rel=1e-5)


def test_random_delays_stay_within_bounds_and_spread_at_the_cap():
    rng = random.Random(1234)
    b = Backoff(min=0.2, max=3, jitter=0.5, random_source=rng.random)
    for n in range(12):
        lo, hi = b.bounds(n)
        seen = [b.delay(n) for _ in range(300)]
        assert all(lo <= d <= hi for d in seen), (n, lo, hi, min(seen), max(seen))
        # Jitter survives the cap: attempts that reached max do not all fire at once.
        assert max(seen) - min(seen) > (hi - lo) * 0.8
    assert all(b.delay(n) <= 3 for n in range(100))


def test_no_delay_ever_exceeds_max_and_huge_attempt_counts_do_not_overflow():
    b = Backoff(min=1, max=5, jitter=1)
    assert b.bounds(10_000) == (0.0, 5.0)
    assert b.delay(10_000, r=0.99) <= 5


def test_the_client_options_map_to_the_backoff():
    import geventsio

    client = geventsio.Client(reconnection_delay=0.25, reconnection_delay_max=2,
                              randomization_factor=0.2)
    assert (client.backoff.min, client.backoff.max, client.backoff.jitter) == (0.25, 2, 0.2)
    default = geventsio.Client().backoff
    assert (default.min, default.max, default.jitter) == (1, 5, 0.5)


@pytest.mark.parametrize("kwargs", [dict(min=-1), dict(min=2, max=1), dict(jitter=1.5),
                                    dict(jitter=-0.1), dict(factor=0.5)])
def test_invalid_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_attempts_count_from_zero():
    with pytest.raises(ValueError):
        Backoff().base(-1)
