"""One slow-path refresh in flight (``RefreshJob``) and the one rule for its wall-clock budget (``refresh_budget``).

Every scheduler (runtime/schedulers.py, runtime/pipeline.py) passes refreshes around as ``RefreshJob``; the core
(runtime/core.py) reads the running one to name an overrun in the step's output and in ``stats()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from automot.runtime.config import RuntimeConfig
from automot.runtime.types import DrivingObservation

# queued -> running -> done (sync, blocking, async: published or discarded by the worker) or, pipelined,
# queued -> running -> ready -> published at its due step; missed (the deadline passed first: never published) or
# skipped (not started: an earlier refresh is hung).
JobStatus = Literal["queued", "running", "done", "ready", "missed", "skipped"]


def refresh_budget(config: RuntimeConfig, has_snapshot: bool) -> tuple[float | None, str]:
    """(seconds or None, option name) a refresh started now may take: ``first_snapshot_timeout_s`` while nothing
    was published (warm-up: loading, first compilations), ``refresh_timeout_s`` afterwards."""
    if not has_snapshot:
        return config.first_snapshot_timeout_s, "first_snapshot_timeout_s"
    return config.refresh_timeout_s, "refresh_timeout_s"


@dataclass(eq=False)
class RefreshJob:
    """One refresh of the observation of ``frame``: what to compute, its budget, and (pipelined) its result."""

    frame: int
    sim_time: float
    observation: DrivingObservation | None  # dropped once the worker took it (frames are large)
    started_at: float = 0.0  # perf_counter the budget runs from (set by ``start_budget``)
    budget: float | None = None
    budget_name: str = "refresh_timeout_s"
    due: int = -1  # pipelined: the frame whose step publishes the snapshot (t + latency_ticks)
    status: JobStatus = "queued"
    snap: Any = None  # pipelined: the computed snapshot, held until its due step
    reasoning: str | None = None
    refresh_ms: float = float("nan")

    def start_budget(self, config: RuntimeConfig, has_snapshot: bool) -> RefreshJob:
        """The budget runs from now (``refresh_budget``); returns self."""
        self.budget, self.budget_name = refresh_budget(config, has_snapshot)
        self.started_at = time.perf_counter()
        return self

    def elapsed(self) -> float:
        return time.perf_counter() - self.started_at

    def over_budget(self) -> bool:
        return self.budget is not None and self.elapsed() > self.budget

    def overrun_note(self) -> str | None:
        """How far this refresh is over its budget, as outputs name it (None: within it, or no budget)."""
        if self.budget is None:
            return None
        elapsed = self.elapsed()
        if elapsed <= self.budget:
            return None
        return (
            f"refresh of frame {self.frame} still running after {elapsed:.3f} s ({self.budget_name}={self.budget:g} s)"
        )
