"""runtime/contention.py: the concurrency sampling covers whole refreshes and balances the two sides; the p99 ratio,
its cycle-bootstrap interval and the quiet-machine check (hand-computed values and planted effects, never a timing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automot.runtime.contention import (
    QUIET_IDLE_SPREAD,
    Cycle,
    idle_spread,
    machine_noise,
    p99_ratio,
    p99_ratio_interval,
    sample_cycles,
)


class FakeWorker:
    """A refresh that lasts exactly ``length`` fast-path ticks; records what each call saw."""

    def __init__(self, length: int, starts: bool = True) -> None:
        self.length, self.starts = length, starts
        self.remaining = 0
        self.ticks_seen: list[bool] = []  # refreshing() at each tick
        self.bare_calls = 0
        self.refreshes = 0

    def tick(self) -> None:
        self.ticks_seen.append(self.remaining > 0)
        self.remaining = max(0, self.remaining - 1)

    def bare(self) -> None:
        self.bare_calls += 1

    def start_refresh(self) -> None:
        self.refreshes += 1
        if self.starts:
            self.remaining = self.length

    def refreshing(self) -> bool:
        return self.remaining > 0

    def wait_idle(self) -> None:
        self.remaining = 0  # the running refresh finishes while the caller waits

    def sample(self, ticks: int, **kwargs) -> list[Cycle]:
        return sample_cycles(self.tick, self.bare, self.start_refresh, self.refreshing, self.wait_idle, ticks, **kwargs)


def test_busy_ticks_span_each_whole_refresh_and_the_idle_side_matches():
    # A refresh of 5 ticks: the 5th tick ends with the refresh, so 4 count as busy; the idle side then runs 4.
    worker = FakeWorker(length=5)
    cycles = worker.sample(10, deadline_s=60)
    assert [len(c.busy_ms) for c in cycles] == [4, 4, 2]  # the third refresh is cut once the busy side is full
    assert [len(c.idle_ms) for c in cycles] == [4, 4, 2]
    assert worker.refreshes == 3 and worker.bare_calls == 10  # one bare engine call before each idle tick
    assert all(len(c.bare_ms) == len(c.idle_ms) for c in cycles)
    # What each tick saw: a refresh running (True) for the busy side, none for the idle side, in this order.
    run, idle = [True] * 5, [False] * 4
    assert worker.ticks_seen == run + idle + run + idle + [True, True] + [False, False]


def test_a_refresh_that_never_starts_ends_at_the_deadline_without_busy_ticks():
    worker = FakeWorker(length=5, starts=False)
    cycles = worker.sample(3, deadline_s=0.2, start_timeout_s=0.01)
    assert cycles and all(not c.busy_ms for c in cycles)
    assert sum(len(c.idle_ms) for c in cycles) <= 3
    assert math.isnan(p99_ratio(cycles)) and p99_ratio_interval(cycles) is None


def test_no_cycle_starts_after_the_slow_path_failed():
    worker = FakeWorker(length=5)
    cycles = worker.sample(1000, deadline_s=60, failed=lambda: worker.refreshes >= 2)
    assert len(cycles) == 2 and worker.refreshes == 2  # instead of running ticks until the deadline


def test_p99_ratio_pools_the_cycles():
    # np.percentile(1..100, 99) = 99.01 (linear interpolation); the busy side is the idle side doubled.
    idle = [float(v) for v in range(1, 101)]
    cycles = [
        Cycle(busy_ms=[2 * v for v in idle[:50]], idle_ms=idle[:50]),
        Cycle([2 * v for v in idle[50:]], idle[50:]),
    ]
    assert np.percentile(idle, 99) == pytest.approx(99.01)
    assert p99_ratio(cycles) == pytest.approx(2.0)


def _cycles(rng: np.random.Generator, slowdown: float, n: int = 20, per: int = 50) -> list[Cycle]:
    out = []
    for _ in range(n):
        idle = 18.0 + rng.gamma(2.0, 1.0, per)
        busy = slowdown * (18.0 + rng.gamma(2.0, 1.0, per))
        out.append(Cycle(busy_ms=list(busy), idle_ms=list(idle)))
    return out


def test_interval_contains_one_without_an_effect_and_excludes_it_with_a_planted_one():
    rng = np.random.default_rng(7)
    same = _cycles(rng, 1.0)
    lo, hi = p99_ratio_interval(same)
    assert lo <= 1.0 <= hi and lo < p99_ratio(same) < hi
    slower = _cycles(rng, 1.3)  # every busy tick 30 % slower
    lo, hi = p99_ratio_interval(slower)
    assert 1.05 < lo <= hi and lo < p99_ratio(slower) < hi


def test_interval_is_reproducible_and_needs_two_cycles():
    cycles = _cycles(np.random.default_rng(1), 1.1, n=5)
    assert p99_ratio_interval(cycles) == p99_ratio_interval(cycles)  # fixed resampling seed
    assert p99_ratio_interval(cycles[:1]) is None
    assert p99_ratio_interval([Cycle(busy_ms=[1.0], idle_ms=[]), *cycles[:1]]) is None  # one usable cycle


def test_idle_spread_is_p95_over_p50_of_the_pooled_idle_ticks_only():
    # 1..100 split over two cycles: np.percentile gives p50 = 50.5 and p95 = 95.05 (linear interpolation).
    idle = [float(v) for v in range(1, 101)]
    cycles = [Cycle(busy_ms=[1000.0] * 5, idle_ms=idle[:30]), Cycle(busy_ms=[], idle_ms=idle[30:])]
    assert idle_spread(cycles) == pytest.approx(95.05 / 50.5)  # the slow busy ticks do not count
    assert math.isnan(idle_spread([Cycle(busy_ms=[1.0])]))


def test_machine_noise_is_quiet_for_a_steady_machine_and_noisy_when_a_tenth_of_the_ticks_stall():
    steady = [Cycle(idle_ms=[15.0 + 0.01 * (i % 7) for i in range(100)]) for _ in range(3)]
    noise = machine_noise(steady)
    assert noise["quiet"] and noise["quiet_limit"] == QUIET_IDLE_SPREAD
    assert noise["idle_tick_p95_over_p50"] == pytest.approx(1.0, abs=0.01)
    # Host episodes: 10 % of the ticks take 20 % longer, so p95 lands on them: spread 18 / 15 = 1.2.
    episodic = [Cycle(idle_ms=[18.0 if i % 10 == 0 else 15.0 for i in range(100)]) for _ in range(3)]
    noise = machine_noise(episodic)
    assert noise["idle_tick_p95_over_p50"] == pytest.approx(1.2) and not noise["quiet"]
    assert machine_noise([])["quiet"] is False  # nothing measured is not a quiet machine
