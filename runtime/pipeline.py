"""The pipelined mode's scheduler (RuntimeConfig.mode == "pipelined").

A refresh starts for the observation of frame t when t is on the schedule (t % refresh_every == 0, or no snapshot
yet), runs on the worker thread while the following ticks step, and its snapshot is published exactly at frame
t + latency_ticks: never earlier, and that step waits for it within its wall-clock budget (a miss is a counted,
flagged safe stop). Results therefore depend on simulation time only, not on how fast the machine is.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from automot.runtime.core import RuntimeCore
from automot.runtime.refresh import RefreshJob
from automot.runtime.schedulers import Scheduler
from automot.runtime.types import DrivingObservation

log = logging.getLogger("automot.runtime.runtime")


class PipelinedScheduler(Scheduler):
    """``submit`` schedules (never waits), ``before_step`` publishes what is due (waiting within the budget), and
    the ``automot-pipeline`` worker computes the scheduled refreshes in frame order."""

    def __init__(self, core: RuntimeCore) -> None:
        super().__init__(core)
        self.jobs: deque[RefreshJob] = deque()  # scheduled refreshes not yet published, in frame order
        # Refreshes in flight in a healthy pipeline are at most ceil((K + 1) / N); more means a refresh is hung (its
        # due ticks miss their deadline anyway), so further ones are skipped instead of queued without end.
        self.max_jobs = self.config.latency_ticks // self.config.refresh_every + 2
        self._start(self._serve, "automot-pipeline")

    def idle(self) -> bool:
        return not self.core.refreshing and not any(j.status == "queued" for j in self.jobs)

    def submit(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        """Start the refresh of this frame if the schedule says so (never waits)."""
        c, core = self.config, self.core
        if core.error is not None:
            return  # a failed runtime only safe-stops; the error is already recorded
        with core.cond:
            if not (frame % c.refresh_every == 0 or (core.store.version == 0 and not self.jobs)):
                return
            # The budget runs from this submit; warm-up: the first snapshot's budget for everything before it.
            job = RefreshJob(frame, sim_time, observation, due=frame + c.latency_ticks)
            job.start_budget(c, core.store.version > 0)
            if sum(1 for j in self.jobs if j.status in ("queued", "running")) >= self.max_jobs:
                # a refresh is hung past its budget: do not pile up more work; this job's due tick is a miss
                job.status, job.observation = "skipped", None
                core.telemetry.count("skipped_refreshes")
            self.jobs.append(job)
            core.cond.notify_all()

    def before_step(self, frame: int) -> str | None:
        """Publish every scheduled snapshot due at or before ``frame``, in order, waiting for it within its budget.
        Returns the reason of a deadline miss (the step is then a safe stop), else None."""
        core = self.core
        missed: str | None = None
        while True:
            with core.cond:
                if not self.jobs or self.jobs[0].due > frame or core.error is not None:
                    return missed
                job = self.jobs[0]
                if job.status in ("queued", "running"):
                    core.telemetry.count("pipeline_waits")
                    started = time.perf_counter()
                    timeout = None if job.budget is None else max(0.0, job.started_at + job.budget - started)
                    core.cond.wait_for(
                        lambda j=job: j.status == "ready" or core.error is not None or core.closed, timeout
                    )
                    core.telemetry.record("pipeline_wait_ms", (time.perf_counter() - started) * 1e3)
                if core.error is not None:
                    return missed
                self.jobs.popleft()
                core.telemetry.count("pipeline_due")
                if job.status != "ready":
                    missed = self._miss(job)
                    continue
                snap, job.snap = job.snap, None
            if core.closed:
                return missed
            core.publish(snap, job.reasoning, job.frame, job.sim_time, None, job.refresh_ms)

    def _miss(self, job: RefreshJob) -> str:
        """Mark a due job missed (a late result is then dropped by the worker) and say why."""
        was, job.status = job.status, "missed"
        self.core.telemetry.count("deadline_misses")
        if was == "skipped":
            why = "was skipped: an earlier refresh is still running past its budget"
        else:
            why = f"not ready after {job.elapsed():.3f} s ({job.budget_name}={job.budget:g} s)"
        missed = (
            f"deadline miss: the refresh of frame {job.frame} due at frame {job.due} "
            f"(latency_ticks={self.config.latency_ticks}) {why}"
        )
        log.warning("%s; safe stop", missed)
        return missed

    def _serve(self) -> None:
        self._worker_setup()
        core = self.core
        while True:
            with core.cond:
                core.cond.wait_for(lambda: core.closed or any(j.status == "queued" for j in self.jobs))
                if core.closed:
                    return
                job = next(j for j in self.jobs if j.status == "queued")
                job.status = "running"
                core.running, core.refreshing = job, True
                observation, job.observation = job.observation, None
            t0 = time.perf_counter()
            try:
                assert observation is not None
                snap, reasoning = core.compute(observation)
                core.finish_slow_stream()  # the publishing step reads these tensors on another stream
            except BaseException as exc:  # noqa: BLE001 - kept and reported by step()/stats(), thread ends
                with core.cond:
                    core.running, core.refreshing = None, False
                core.fail(exc)
                return
            with core.cond:
                core.running, core.refreshing = None, False
                if job.over_budget():
                    core.telemetry.count("late_refreshes")
                if job.status == "missed":
                    core.telemetry.count("discarded_refreshes")
                else:
                    job.snap, job.reasoning, job.status = snap, reasoning, "ready"
                    job.refresh_ms = (time.perf_counter() - t0) * 1e3
                core.cond.notify_all()

    def stats(self) -> dict:
        """``stats()["pipeline"]``: scheduled snapshots that came due, steps that had to wait for theirs (and how
        long), due snapshots not ready within the budget (flagged safe stops)."""
        counters = self.core.telemetry.counters
        return {
            "pipeline": {
                "latency_ticks": self.config.latency_ticks,
                "refresh_every": self.config.refresh_every,
                "due": counters.get("pipeline_due", 0),
                "waits": counters.get("pipeline_waits", 0),
                "wait_ms_total": round(float(sum(self.core.telemetry.series("pipeline_wait_ms"))), 4),
                "deadline_misses": counters.get("deadline_misses", 0),
            }
        }
