"""When the slow path runs: one scheduler object per ``RuntimeConfig.mode``, chosen once by ``create_scheduler``.

=============  ==================================================================  ==========================
mode           refresh                                                              class
=============  ==================================================================  ==========================
``sync``       in ``submit`` when ``frame % sync_every == 0`` or no snapshot yet    ``SyncScheduler``
``blocking``   in every ``submit``                                                  ``BlockingScheduler``
``async``      on a worker, whenever a newer observation was submitted              ``AsyncScheduler``
``pipelined``  fixed schedule in simulation time (runtime/pipeline.py)             ``PipelinedScheduler``
=============  ==================================================================  ==========================

A scheduler owns its worker thread (if any) and its queue; everything else (engines, buffers, the refresh itself,
the fast step) is the shared ``RuntimeCore`` (runtime/core.py), which knows no mode.
"""

from __future__ import annotations

import abc
import logging
import sys
import threading
from collections.abc import Callable

from automot.runtime.config import RuntimeConfig
from automot.runtime.core import RuntimeCore
from automot.runtime.refresh import RefreshJob
from automot.runtime.threads import lower_thread_priority, set_torch_threads
from automot.runtime.types import DrivingObservation

log = logging.getLogger("automot.runtime.runtime")


class Scheduler(abc.ABC):
    """The interface every mode implements, and the thread handling they share.

    ``submit`` takes the tick's observation; ``before_step`` runs at the start of every ``step`` (it may wait, and
    returns the reason of a deadline miss or None); ``idle`` says nothing is queued; ``stats`` adds the mode's own
    entries to ``AutoMoTRuntime.stats()``.
    """

    def __init__(self, core: RuntimeCore) -> None:
        self.core = core
        self.config: RuntimeConfig = core.config
        self.thread: threading.Thread | None = None
        self._saved_switch_interval: float | None = None

    @abc.abstractmethod
    def submit(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        """Take the tick's observation: refresh now, queue it, or skip it, as the mode decides."""

    def before_step(self, frame: int) -> str | None:
        return None

    def idle(self) -> bool:
        return True

    def stats(self) -> dict:
        return {"pipeline": None}

    def _start(self, target: Callable[[], None], name: str) -> None:
        if self.config.overlapping and self.config.switch_interval_s is not None:
            # The fast path re-takes the GIL after every C call; with Python's default 5 ms interval a worker busy
            # in Python code (image preprocessing) can hold it that long each time.
            self._saved_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.config.switch_interval_s)
        # Daemon: a refresh that never returns cannot block interpreter exit (close() reports it instead).
        self.thread = threading.Thread(target=target, name=name, daemon=True)
        self.thread.start()

    def _worker_setup(self) -> None:
        set_torch_threads(self.core.threads_slow)  # per thread (runtime/threads.py): the caller's setting is untouched
        if self.config.overlapping:  # the paths overlap: CPU contention should favour the fast path
            lower_thread_priority(self.config.slow_nice)

    def join(self) -> str | None:
        """Wait ``close_timeout_s`` for the worker (the core is already closed); the problem if it did not end."""
        problem = None
        if self.thread is not None:
            self.thread.join(self.config.close_timeout_s)
            if self.thread.is_alive():
                # Bounded and reported, not raised: the thread is a daemon (it cannot block interpreter exit), it
                # never publishes after close, and raising here would mask the caller's own exception.
                problem = (
                    f"{self.thread.name} thread still running {self.config.close_timeout_s} s after close() "
                    f"({self.core.overrun_note() or 'a refresh longer than close_timeout_s'}); left behind as a "
                    "daemon thread that will not publish"
                )
        if self._saved_switch_interval is not None and sys.getswitchinterval() == self.config.switch_interval_s:
            sys.setswitchinterval(self._saved_switch_interval)
        return problem


class _QueueScheduler(Scheduler):
    """sync / blocking / async: at most one refresh waits (``pending``) while at most one runs on the worker."""

    def __init__(self, core: RuntimeCore) -> None:
        super().__init__(core)
        self.pending: RefreshJob | None = None

    def idle(self) -> bool:
        return self.pending is None and not self.core.refreshing

    def _serve(self) -> None:
        """The worker: take the pending refresh, run it, repeat until the core closes or a refresh fails."""
        self._worker_setup()
        core = self.core
        while True:
            with core.cond:
                core.cond.wait_for(lambda: core.closed or self.pending is not None)
                if core.closed:
                    return
                job, self.pending = self.pending, None
                assert job is not None and job.observation is not None
                observation, job.observation, job.status = job.observation, None, "running"
                self._begin(job)
                core.running, core.refreshing = job, True
            try:
                core.refresh(observation, job.sim_time, job.frame)
            except BaseException as exc:  # noqa: BLE001 - kept and reported by step()/stats(), thread ends
                core.fail(exc)
                return
            finally:
                with core.cond:
                    if job.over_budget():
                        core.telemetry.count("late_refreshes")
                    job.status, core.running, core.refreshing = "done", None, False
                    core.cond.notify_all()

    def _begin(self, job: RefreshJob) -> None:
        """Called under the lock when the worker starts ``job`` (async: its budget starts now)."""


class SyncScheduler(_QueueScheduler):
    """Refresh every ``sync_every`` frames (or while no snapshot exists); ``submit`` waits for it within its budget.

    ``refresh_timeout_s=None``: no budget and no thread, the refresh runs inline in the calling thread.
    """

    def __init__(self, core: RuntimeCore) -> None:
        super().__init__(core)
        if self.config.refresh_timeout_s is not None:
            self._start(self._serve, "automot-refresh")

    def due(self, frame: int) -> bool:
        return self.core.store.version == 0 or frame % self.config.sync_every == 0

    def submit(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        core = self.core
        if core.error is not None or not self.due(frame):
            return  # a failed runtime only safe-stops; the error is already recorded
        if self.thread is None:
            set_torch_threads(core.threads_slow)
            try:
                core.refresh(observation, sim_time, frame)
            except Exception as exc:  # kept, logged and reported by every later step, as in async mode
                core.fail(exc)
            return
        with core.cond:
            if core.refreshing or self.pending is not None:
                # The previous refresh overran its budget and still runs: one refresh at a time, and no wait.
                core.telemetry.count("skipped_refreshes")
                return
            # The budget runs from now, so a step after a timed-out wait always sees the overrun.
            job = RefreshJob(frame, sim_time, observation).start_budget(self.config, core.store.version > 0)
            core.running = self.pending = job
            core.cond.notify_all()
            done = core.cond.wait_for(
                lambda: (self.pending is None and not core.refreshing) or core.error is not None or core.closed,
                job.budget,
            )
        if not done:
            core.telemetry.count("refresh_timeouts")
            log.warning(
                "refresh of frame %d exceeded its budget (%s=%g s); it keeps running in the background, ticks use "
                "the previous snapshot within the age limits or stop",
                frame,
                job.budget_name,
                job.budget,
            )


class BlockingScheduler(SyncScheduler):
    """Refresh on every ``submit`` (the slow baseline); otherwise as sync."""

    def due(self, frame: int) -> bool:
        return True


class AsyncScheduler(_QueueScheduler):
    """A worker refreshes whenever a newer observation was submitted (latest wins); ``step`` never waits for it,
    except once for the first snapshot (bounded by ``first_snapshot_timeout_s``)."""

    def __init__(self, core: RuntimeCore) -> None:
        super().__init__(core)
        self._submitted = False
        self._first_wait_done = False
        self._start(self._serve, "automot-slow-path")

    def submit(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        with self.core.cond:
            self._submitted = True
            if self.pending is not None:
                self.core.telemetry.count("dropped_observations")  # superseded before the worker got to it
            self.pending = RefreshJob(frame, sim_time, observation)
            self.core.cond.notify_all()

    def _begin(self, job: RefreshJob) -> None:
        job.start_budget(self.config, self.core.store.version > 0)

    def before_step(self, frame: int) -> str | None:
        core = self.core
        if core.store.version == 0 and self._submitted and not self._first_wait_done:
            # Before the first snapshot: wait for it once (bounded) instead of stopping on the first warm-up tick;
            # if it does not come in time, later steps stop at once until it does (never 10 s per tick).
            self._first_wait_done = True
            core.telemetry.count("first_snapshot_waits")
            core.store.wait(
                lambda: core.store.version > 0 or core.error is not None or core.closed,
                self.config.first_snapshot_timeout_s,
            )
        return None


def create_scheduler(core: RuntimeCore) -> Scheduler:
    """The scheduler of ``core.config.mode``: the one place that maps a mode to its behaviour."""
    from automot.runtime.pipeline import PipelinedScheduler

    classes: dict[str, type[Scheduler]] = {
        "sync": SyncScheduler,
        "blocking": BlockingScheduler,
        "async": AsyncScheduler,
        "pipelined": PipelinedScheduler,
    }
    return classes[core.config.mode](core)
