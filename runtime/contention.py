"""How much slower the fast step is while a refresh runs: the sampling design and the ratio's uncertainty.

Used by ``automot bench`` (``concurrency_ratio``) and ``scripts/gpu_acceptance.py``. Three things matter on a small,
shared machine, all measured on the 2-core dev VMs (runtime/README.md "Concurrency"):

* **Cover the whole refresh.** A refresh is not uniform (vision tower, then the language layers, then the copy into
  the KV slot). Ticks are sampled from the start of one refresh to its end, so every phase weighs by its duration.
  A fixed block of 20 ticks after each submit only ever saw the first ~0.4 s of a ~1 s refresh (the vision tower).
* **Say how sure the number is.** A p99 over a few hundred ticks is about their 3rd-slowest tick. One refresh's ticks
  are correlated, so the interval resamples whole cycles (one refresh and the idle block next to it), not ticks.
* **Say whether the machine was quiet.** An idle tick repeats the same work on the same inputs, so the spread of the
  idle ticks is what the machine adds (other tenants, host scheduling). On the dev VM, with unchanged code, runs with
  a spread above the limit gave ratios of 1.02-1.16, runs below it 0.98-1.05 (runtime/README.md "Concurrency").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

RESAMPLES = 2000
RNG_SEED = 0
# Idle-tick p95 / p50 up to which the machine counts as quiet. Dev VM, 2026-12-07, six bench runs of one tree:
# 1.185 and 1.219 in the two at 06:40 UTC (ratios 1.161, 1.021), 1.035-1.052 in the four from 07:32 (0.980-1.049).
QUIET_IDLE_SPREAD = 1.10


@dataclass
class Cycle:
    """One refresh with the ticks that ran entirely inside it (``busy_ms``), and as many ticks on an idle worker
    right after it (``idle_ms``), each preceded by a bare engine call (``bare_ms``)."""

    busy_ms: list[float] = field(default_factory=list)
    idle_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)


def timed_ms(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn``, in milliseconds."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def sample_cycles(
    tick: Callable[[], object],
    bare: Callable[[], object],
    start_refresh: Callable[[], None],
    refreshing: Callable[[], bool],
    wait_idle: Callable[[], None],
    ticks: int,
    deadline_s: float,
    start_timeout_s: float = 5.0,
    failed: Callable[[], bool] = lambda: False,
) -> list[Cycle]:
    """Alternate cycles until both sides have ``ticks`` samples (or ``deadline_s`` of wall time passed).

    A busy tick counts only when a refresh was running both before and after it; the idle side of a cycle then runs
    as many ticks as its busy side got, so that load from outside the process hits both sides alike. A refresh that
    has not started ``start_timeout_s`` after ``start_refresh`` leaves its cycle without busy ticks; once ``failed()``
    (the slow path died) no new cycle starts.
    """
    cycles: list[Cycle] = []
    idle_total = busy_total = 0
    deadline = time.monotonic() + deadline_s
    while (idle_total < ticks or busy_total < ticks) and time.monotonic() < deadline and not failed():
        cycle = Cycle()
        if busy_total < ticks:
            wait_idle()
            start_refresh()
            started = time.monotonic()
            while not refreshing() and time.monotonic() - started < start_timeout_s:  # the worker picks it up
                time.sleep(0.0002)
            while refreshing() and busy_total + len(cycle.busy_ms) < ticks and time.monotonic() < deadline:
                ms = timed_ms(tick)
                if refreshing():
                    cycle.busy_ms.append(ms)
            busy_total += len(cycle.busy_ms)
        wait_idle()
        # As many idle ticks as this cycle's busy side got (at least one, so a cycle always makes progress); once
        # the busy side is full, the rest of the idle side.
        wanted = ticks - idle_total if busy_total >= ticks else max(1, len(cycle.busy_ms))
        for _ in range(min(wanted, ticks - idle_total)):
            cycle.bare_ms.append(timed_ms(bare))
            cycle.idle_ms.append(timed_ms(tick))
        idle_total += len(cycle.idle_ms)
        cycles.append(cycle)
    return cycles


def _pooled(cycles: list[Cycle], side: Literal["busy_ms", "idle_ms"]) -> np.ndarray:
    """One side's ticks of every cycle, as one array (empty without cycles)."""
    return np.concatenate([getattr(c, side) for c in cycles] or [np.empty(0)])


def p99_ratio(cycles: list[Cycle]) -> float:
    """p99 of the busy ticks over p99 of the idle ticks, all cycles pooled (NaN without both)."""
    busy, idle = _pooled(cycles, "busy_ms"), _pooled(cycles, "idle_ms")
    if busy.size == 0 or idle.size == 0:
        return float("nan")
    return float(np.percentile(busy, 99) / np.percentile(idle, 99))


def p99_ratio_interval(
    cycles: list[Cycle], level: float = 0.95, resamples: int = RESAMPLES, seed: int = RNG_SEED
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of ``p99_ratio`` over whole cycles (None with fewer than 2 usable cycles)."""
    usable = [c for c in cycles if c.busy_ms and c.idle_ms]
    if len(usable) < 2:
        return None
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for i in range(resamples):
        picked = rng.integers(0, len(usable), len(usable))
        stats[i] = p99_ratio([usable[j] for j in picked])
    tail = (1.0 - level) / 2.0
    lo, hi = np.percentile(stats, [100 * tail, 100 * (1 - tail)])
    return float(lo), float(hi)


def idle_spread(cycles: list[Cycle]) -> float:
    """p95 over p50 of the idle ticks, all cycles pooled (NaN without idle ticks)."""
    idle = _pooled(cycles, "idle_ms")
    if idle.size == 0:
        return float("nan")
    p50, p95 = np.percentile(idle, [50, 95])
    return float(p95 / p50)


def machine_noise(cycles: list[Cycle], limit: float = QUIET_IDLE_SPREAD) -> dict[str, float | bool]:
    """``idle_tick_p95_over_p50`` with the ``quiet_limit`` it is held to, and ``quiet``: whether the ratio above was
    measured on a quiet machine (a NaN spread is not quiet)."""
    spread = idle_spread(cycles)
    return {"idle_tick_p95_over_p50": round(spread, 3), "quiet_limit": limit, "quiet": bool(spread <= limit)}
