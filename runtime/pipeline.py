"""The pipelined mode's schedule (RuntimeConfig.mode == "pipelined"), as a mixin of AutoMoTRuntime.

A refresh starts for the observation of frame t when t is on the schedule (t % refresh_every == 0, or no snapshot
yet), runs on the worker thread while the following ticks step, and its snapshot is published exactly at frame
t + latency_ticks: never earlier, and that step waits for it within its wall-clock budget (a miss is a counted,
flagged safe stop). Results therefore depend on simulation time only, not on how fast the machine is.

The mixin uses the runtime's state: ``config``, ``store``, ``telemetry``, ``_cond``, ``_jobs``, ``_max_jobs``,
``_error``, ``_closed``, ``_refreshing``, ``_job``, ``_slow_stream``, ``threads_slow`` and its ``_compute``,
``_publish_snapshot`` and ``_fail``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from automot.runtime.threads import _lower_thread_priority, _set_torch_threads
from automot.runtime.types import DrivingObservation

log = logging.getLogger("automot.runtime.runtime")  # the runtime's logger: messages keep their source


@dataclass(eq=False)
class _PipelineJob:
    """One scheduled refresh of the pipelined mode: started at ``frame``, published exactly at frame ``due``."""

    frame: int
    sim_time: float
    due: int
    observation: DrivingObservation | None
    submitted_at: float  # perf_counter: the wall-clock budget runs from here
    budget: float | None
    budget_name: str
    status: str = "queued"  # queued -> running -> ready | missed (the deadline passed: never published) | skipped
    snap: Any = None
    reasoning: str | None = None
    refresh_ms: float = float("nan")


class PipelineMixin:
    """``_schedule`` (pipelined submit), ``_publish_due`` (pipelined step) and ``_pipeline_worker`` (its thread)."""

    def _schedule(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        """pipelined ``submit``: start the refresh of this frame if the schedule says so (never waits)."""
        c = self.config
        with self._cond:
            if not (frame % c.refresh_every == 0 or (self.store.version == 0 and not self._jobs)):
                return
            first = self.store.version == 0  # warm-up: the first snapshot's budget for everything before it
            budget = c.first_snapshot_timeout_s if first else c.refresh_timeout_s
            name = "first_snapshot_timeout_s" if first else "refresh_timeout_s"
            job = _PipelineJob(frame, sim_time, frame + c.latency_ticks, observation, time.perf_counter(), budget, name)
            if sum(1 for j in self._jobs if j.status in ("queued", "running")) >= self._max_jobs:
                # a refresh is hung past its budget: do not pile up more work; this job's due tick is a miss
                job.status, job.observation = "skipped", None
                self.telemetry.count("skipped_refreshes")
            self._jobs.append(job)
            self._cond.notify_all()

    def _publish_due(self, frame: int) -> str | None:
        """pipelined ``step``: publish every scheduled snapshot due at or before ``frame``, in order, waiting for it
        within its budget. Returns the reason of a deadline miss (the step is then a safe stop), else None."""
        missed: str | None = None
        while True:
            with self._cond:
                if not self._jobs or self._jobs[0].due > frame or self._error is not None:
                    return missed
                job = self._jobs[0]
                if job.status in ("queued", "running"):
                    self.telemetry.count("pipeline_waits")
                    started = time.perf_counter()
                    timeout = None if job.budget is None else max(0.0, job.submitted_at + job.budget - started)
                    self._cond.wait_for(
                        lambda j=job: j.status == "ready" or self._error is not None or self._closed, timeout
                    )
                    self.telemetry.record("pipeline_wait_ms", (time.perf_counter() - started) * 1e3)
                if self._error is not None:
                    return missed
                self._jobs.popleft()
                self.telemetry.count("pipeline_due")
                if job.status != "ready":
                    was, job.status = job.status, "missed"  # a late result is dropped by the worker
                    self.telemetry.count("deadline_misses")
                    if was == "skipped":
                        why = "was skipped: an earlier refresh is still running past its budget"
                    else:
                        elapsed = time.perf_counter() - job.submitted_at
                        why = f"not ready after {elapsed:.3f} s ({job.budget_name}={job.budget:g} s)"
                    missed = (
                        f"deadline miss: the refresh of frame {job.frame} due at frame {job.due} "
                        f"(latency_ticks={self.config.latency_ticks}) {why}"
                    )
                    log.warning("%s; safe stop", missed)
                    continue
                snap, job.snap = job.snap, None
            if self._closed:
                return missed
            self._publish_snapshot(snap, job.reasoning, job.frame, job.sim_time, None, job.refresh_ms)

    def _pipeline_worker(self) -> None:
        _set_torch_threads(self.threads_slow)
        if self.config.overlapping:  # K >= 1: the paths overlap, CPU contention should favour the fast path
            _lower_thread_priority(self.config.slow_nice)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or any(j.status == "queued" for j in self._jobs))
                if self._closed:
                    return
                job = next(j for j in self._jobs if j.status == "queued")
                job.status = "running"
                self._refreshing = True
                self._job = (job.frame, job.submitted_at, job.budget, job.budget_name)
                observation, job.observation = job.observation, None
            t0 = time.perf_counter()
            try:
                assert observation is not None
                snap, reasoning = self._compute(observation)
                if self._slow_stream is not None:
                    self._slow_stream.synchronize()  # the publishing step reads these tensors on another stream
            except BaseException as exc:  # noqa: BLE001 - kept and reported by step()/stats(), thread ends
                with self._cond:
                    self._job, self._refreshing = None, False
                self._fail(exc)
                return
            with self._cond:
                self._job, self._refreshing = None, False
                if job.budget is not None and time.perf_counter() - job.submitted_at > job.budget:
                    self.telemetry.count("late_refreshes")
                if job.status == "missed":
                    self.telemetry.count("discarded_refreshes")
                else:
                    job.snap, job.reasoning, job.status = snap, reasoning, "ready"
                    job.refresh_ms = (time.perf_counter() - t0) * 1e3
                self._cond.notify_all()
