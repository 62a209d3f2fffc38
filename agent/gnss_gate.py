"""Plausibility gate for GNSS fixes: a fix that no vehicle can have reached since the last accepted one is ignored.

Bound: a fix is a *jump* when its distance to the last accepted fix exceeds ``max_speed * elapsed + noise_m``
(defaults 100 m/s and 5 m: 10 m in one 20 Hz tick, i.e. 200 m/s, while the leaderboard's GNSS noise is about 0.5 m
per axis and CARLA cars stay far below 100 m/s). ``elapsed`` is the simulation time since that fix, at least one
tick. A jump is ignored (the agent keeps its pose estimate and flags the tick). If ``confirm_ticks`` consecutive
fixes agree with each other but not with the old position, the vehicle really is elsewhere (e.g. respawned):
the gate accepts the new position and the agent re-initialises its estimator.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

ACCEPT, IGNORE, REANCHOR = "accept", "ignore", "reanchor"


class GnssVerdict(NamedTuple):
    action: str  # ACCEPT, IGNORE (keep the estimate) or REANCHOR (accept and re-initialise the estimator)
    flag: str | None  # one line for the tick record (None for a plain accept)


class GnssGate:
    """Judges each measured GNSS position (local metres) against the last accepted one."""

    def __init__(
        self, max_speed: float | None = 100.0, noise_m: float = 5.0, confirm_ticks: int = 3, tick_s: float = 0.05
    ) -> None:
        self.max_speed = max_speed
        self.noise_m = noise_m
        self.confirm_ticks = confirm_ticks
        self.tick_s = tick_s
        self._last: tuple[np.ndarray, float] | None = None  # last accepted fix and its sim time
        self._candidate: tuple[np.ndarray, float, int] | None = None  # rejected fixes that agree with each other

    def _limit(self, since: float, now: float) -> tuple[float, float]:
        elapsed = now - since
        elapsed = elapsed if math.isfinite(elapsed) and elapsed >= self.tick_s else self.tick_s
        assert self.max_speed is not None
        return elapsed, self.max_speed * elapsed + self.noise_m

    def check(self, xy: np.ndarray, sim_time: float) -> GnssVerdict:
        """Verdict on the fix ``xy`` (2,) at ``sim_time``; updates the gate's state."""
        xy = np.asarray(xy, dtype=np.float64).reshape(2)
        if self.max_speed is None or self._last is None:
            self._accept(xy, sim_time)
            return GnssVerdict(ACCEPT, None)
        last_xy, last_t = self._last
        elapsed, limit = self._limit(last_t, sim_time)
        dist = float(np.linalg.norm(xy - last_xy))
        if dist <= limit:
            self._accept(xy, sim_time)
            return GnssVerdict(ACCEPT, None)
        count = 1
        if self._candidate is not None:
            cand_xy, cand_t, cand_n = self._candidate
            if float(np.linalg.norm(xy - cand_xy)) <= self._limit(cand_t, sim_time)[1]:
                count = cand_n + 1
        if count >= self.confirm_ticks:
            self._accept(xy, sim_time)
            return GnssVerdict(
                REANCHOR,
                f"GNSS moved {dist:.1f} m from the last accepted fix and {count} consecutive fixes agree: position "
                "re-anchored, estimator re-initialised",
            )
        self._candidate = (xy, sim_time, count)
        return GnssVerdict(
            IGNORE,
            f"GNSS jump of {dist:.1f} m in {elapsed:.3f} s (> {limit:.1f} m = gnss.max_speed {self.max_speed:g} m/s "
            f"x elapsed + gnss.jump_noise_m {self.noise_m:g} m): fix ignored, estimate kept",
        )

    def _accept(self, xy: np.ndarray, sim_time: float) -> None:
        self._last = (xy, sim_time if math.isfinite(sim_time) else 0.0)
        self._candidate = None
