"""Parking-deadlock escape of the released AutoMoT agent (docs/released-agent.md §6).

When the ego has not left a 5 m circle for 1500 ticks (e.g. boxed in at a parking start, or waiting behind a
parked car the model will not pass), the released agent drops a few route points, feeds the model a fixed
sideways target point and forces a left turn with some throttle for up to 39 ticks (its 40-tick timer is already
counted down on the trigger tick), then rests for 2400 ticks.
Every number is an ``EscapeConfig`` field (``control.escape`` in the agent YAML).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Protocol

import numpy as np

from automot.agent.control import ControlCommand, EscapeConfig
from automot.geometry import wrap_angle

log = logging.getLogger(__name__)


class PoppableRoute(Protocol):
    """What the escape needs from the route planner."""

    def pop_points(self, count: int, keep: int) -> int: ...


class ParkingEscape:
    """``EscapePolicy`` implementation; one instance per route.

    State is advanced by ``update`` once per driving tick; ``adjust_target_points`` and ``override`` only read it,
    so a safe-stop tick (controller not stepped) still runs the timer down.
    """

    def __init__(self, config: EscapeConfig | None = None, route: PoppableRoute | None = None) -> None:
        self.config = config or EscapeConfig()
        self.route = route
        self.snapshots: deque[tuple[int, np.ndarray]] = deque()
        self.active = False
        self.attempt = 0
        self.timer = 0
        self.cooldown_until = -1  # first tick at which a new escape may start
        self.popped = 0  # route points dropped by the last trigger
        self._start_xy: np.ndarray | None = None
        self._start_yaw = 0.0

    # ------------------------------------------------------------------ EscapePolicy

    def update(self, tick: int, position: np.ndarray, yaw: float) -> None:
        """Record snapshots, start a new escape or advance (and possibly end) the running one.

        Order as in the released ``run_step`` (mot_b2d_agent.py 278fa5a: ``_update_pos_snapshots``,
        ``_activate_parking_escape``, ``_check_escape_progress``, ``_get_escape_target_points``): snapshots and
        the deadlock check only while no escape runs; a new escape is checked for progress and has its timer
        counted down on its trigger tick already, so it forces control for ``duration_ticks - 1`` ticks.
        """
        cfg = self.config
        pos = np.asarray(position, dtype=np.float64).reshape(2)
        if not self.active:
            self._snapshot(tick, pos)
            if tick >= self.cooldown_until and self.deadlocked(tick):
                self._trigger(tick, pos, yaw)
        if not self.active:
            return
        reason = self._progress_end_reason(pos, yaw)
        if reason is None:
            self.timer -= 1
            if self.timer <= 0:
                reason = "timer"
        if reason is not None:
            self.active = False
            self.timer = 0
            self.cooldown_until = tick + cfg.cooldown_ticks
            log.info("parking escape %d ended at tick %d (%s)", self.attempt, tick, reason)

    def adjust_target_points(self, tick: int, target_points: np.ndarray) -> np.ndarray:
        """During an escape: the fixed sideways target points; otherwise the input unchanged."""
        if not self.active:
            return target_points
        cfg = self.config
        lateral = cfg.target_y + cfg.target_y_per_attempt * self.attempt
        return np.array([[cfg.target_x, lateral], [cfg.next_target_x, lateral]], dtype=np.float32)

    def override(self, tick: int, position: np.ndarray | None, speed: float) -> ControlCommand | None:
        """During an escape: forced steer and throttle, brake off; otherwise None."""
        if not self.active:
            return None
        cfg = self.config
        return ControlCommand(steer=cfg.steer, throttle=cfg.throttle, brake=0.0, mode="escape")

    # ------------------------------------------------------------------ internals

    def deadlocked(self, tick: int) -> bool:
        """At least two snapshots, the oldest a full window old, and none outside the displacement circle.

        Checked on every tick (not only on snapshot ticks): the released agent prunes old snapshots only when it
        takes a new one, so the oldest snapshot stays a full window old for up to ``snapshot_every`` ticks.
        """
        cfg = self.config
        if len(self.snapshots) < 2 or tick - self.snapshots[0][0] < cfg.window_ticks:
            return False
        oldest = self.snapshots[0][1]
        spread = max(float(np.linalg.norm(p - oldest)) for _, p in self.snapshots)
        return spread < cfg.max_displacement

    def _snapshot(self, tick: int, pos: np.ndarray) -> None:
        """On snapshot ticks: keep the position and drop snapshots more than a window old (only then)."""
        cfg = self.config
        if tick % cfg.snapshot_every != 0:
            return
        self.snapshots.append((tick, pos.copy()))
        while self.snapshots and self.snapshots[0][0] < tick - cfg.window_ticks:
            self.snapshots.popleft()

    def _trigger(self, tick: int, pos: np.ndarray, yaw: float) -> None:
        cfg = self.config
        self.active = True
        self.attempt += 1
        self.timer = cfg.duration_ticks
        self._start_xy, self._start_yaw = pos.copy(), float(yaw)
        self.popped = self.route.pop_points(cfg.pop_points, cfg.keep_points) if self.route is not None else 0
        log.warning(
            "parking deadlock at tick %d: escape attempt %d (dropped %d route points)", tick, self.attempt, self.popped
        )

    def _progress_end_reason(self, pos: np.ndarray, yaw: float) -> str | None:
        """Early end: heading changed or the ego moved far enough (checked before the timer, as released)."""
        cfg = self.config
        heading_change = abs(math.degrees(float(wrap_angle(float(yaw) - self._start_yaw))))
        if heading_change > cfg.end_heading_deg:
            return f"heading changed {heading_change:.1f} deg"
        moved = float(np.linalg.norm(pos - self._start_xy))
        if moved > cfg.end_displacement:
            return f"moved {moved:.1f} m"
        return None
