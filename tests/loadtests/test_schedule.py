"""Open-loop schedules: seeded absolute times, split exactly across processes."""

from __future__ import annotations

import itertools
import statistics

from loadtests.schedule import arrival_offsets, intended_ns, rate_at, share


def test_constant_rate_is_start_plus_i_over_rate() -> None:
    offs = arrival_offsets([(0.0, 2.0, 4.0)], poisson=False, seed=1)
    assert offs == [i / 4.0 for i in range(8)]


def test_piecewise_rates_restart_at_each_segment() -> None:
    offs = arrival_offsets([(0.0, 1.0, 2.0), (1.0, 2.0, 4.0)], poisson=False, seed=1)
    assert offs == [0.0, 0.5, 1.0, 1.25, 1.5, 1.75]
    assert rate_at([(0.0, 1.0, 2.0), (1.0, 2.0, 4.0)], 1.5) == 4.0
    assert rate_at([(0.0, 1.0, 2.0)], 3.0) is None


def test_poisson_is_seeded_and_has_the_asked_rate() -> None:
    a = arrival_offsets([(0.0, 200.0, 10.0)], poisson=True, seed=7)
    b = arrival_offsets([(0.0, 200.0, 10.0)], poisson=True, seed=7)
    c = arrival_offsets([(0.0, 200.0, 10.0)], poisson=True, seed=8)
    assert a == b and a != c
    assert all(0 <= x < 200 for x in a) and a == sorted(a)
    assert 1800 < len(a) < 2200  # 2000 expected; 4.5 sigma either side
    gaps = [y - x for x, y in itertools.pairwise(a)]
    assert 0.09 < statistics.mean(gaps) < 0.11
    assert 0.8 < statistics.stdev(gaps) / statistics.mean(gaps) < 1.2  # exponential: cv = 1


def test_shares_partition_the_schedule_exactly() -> None:
    offs = arrival_offsets([(0.0, 10.0, 7.0)], poisson=True, seed=3)
    parts = [share(offs, i, 3) for i in range(3)]
    assert sorted(x for p in parts for x in p) == offs
    assert abs(len(parts[0]) - len(parts[2])) <= 1


def test_intended_times_are_absolute() -> None:
    t0 = 1_700_000_000_000_000_000
    assert intended_ns(t0, 0.25) == t0 + 250_000_000
