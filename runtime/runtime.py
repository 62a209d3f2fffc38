"""The dual-rate runtime the agent talks to: ``submit`` feeds the slow path, ``step`` runs the fast path now.

``AutoMoTRuntime`` is a ``RuntimeCore`` (runtime/core.py: engines, KV double buffer, telemetry, the refresh and
the fast step; it knows no mode) plus the mode's scheduler (runtime/schedulers.py, runtime/pipeline.py), chosen
once by ``create_scheduler``.

Slow path: DrivingObservation -> ``model.build_observation`` -> ``model.prefill`` (or ``model.reason``) -> copy into
the back KV buffer -> atomic swap (runtime/buffers.py). Fast path: DrivingState -> ``model.build_state`` -> the
selected engine on the pinned front buffer -> RuntimeOutput (numpy, batch 1). When the model carries a scene encoder
(the released BEV encoder, runtime/scene.py) and the state brings ``scene_inputs``, the encoder runs first on every
step (eager torch for the torch engines, its exported ONNX / TensorRT engine for those engines), and its tokens
are the action expert's scene features.

Thread budget (measured on the 2-core dev machines, torch 2.13 with the OpenMP backend): ``torch.set_num_threads``
stores a process-wide default, but the OpenMP / MKL thread count it sets is per calling thread once that thread
has run a torch op. So the worker sets ``threads_slow`` inside itself, and the fast path either runs on ONNX
Runtime with its own ``intra_op_num_threads`` pool (recommended, it never touches torch's setting) or, for the
torch engines, sets ``threads_fast`` in the thread that calls ``step`` (that thread keeps it; sync/blocking
refreshes in that thread set ``threads_slow`` first, both default to all cores there).
On CUDA the slow path runs on a normal-priority stream and the fast path on a high-priority one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from automot.runtime.buffers import DoubleBufferedKV
from automot.runtime.config import RuntimeConfig
from automot.runtime.core import STOP_DEADLINE, STOP_FAILED, RuntimeCore
from automot.runtime.engines import FastEngine
from automot.runtime.scene import SceneEncoderRunner
from automot.runtime.schedulers import Scheduler, create_scheduler
from automot.runtime.telemetry import Telemetry
from automot.runtime.types import DrivingObservation, DrivingState, RuntimeOutput

log = logging.getLogger(__name__)


class AutoMoTRuntime:
    """Owns the core (engines, KV double buffer, telemetry) and the scheduler of its mode (and its thread)."""

    def __init__(self, model: torch.nn.Module, config: RuntimeConfig, engine: FastEngine | None = None) -> None:
        self.model = model
        self.config = config
        self.core = RuntimeCore(model, config, engine)
        self.store: DoubleBufferedKV = self.core.store
        self.telemetry: Telemetry = self.core.telemetry
        self.device: torch.device = self.core.device
        self.capacity: int = self.core.capacity
        self.threads_fast, self.threads_slow = self.core.threads_fast, self.core.threads_slow
        self.close_problem: str | None = None  # set when close() gave up on a refresh that never returned
        self.scheduler: Scheduler = create_scheduler(self.core)

    @property
    def engine(self) -> FastEngine:
        return self.core.engine

    @property
    def scene_encoder(self) -> SceneEncoderRunner | None:
        return self.core.scene_encoder

    # ------------------------------------------------------------------ agent API
    def submit(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        """Hand the newest frames/prompt to the slow path; the mode's scheduler decides whether and when it runs
        (async: queue, latest wins; sync/blocking: maybe refresh now; pipelined: maybe schedule)."""
        self._check_open()
        with self.core.cond:
            self.core.telemetry.count("observations")
        self.scheduler.submit(observation, sim_time, frame)

    def step(self, state: DrivingState, sim_time: float, frame: int) -> RuntimeOutput:
        """Run the fast path on the newest published snapshot, or return a flagged safe stop.

        ``state``: target_points (2, 2) ego frame, speed (m/s), optional scene (N_scene, D_scene) or scene_inputs.
        The RuntimeOutput carries path (n_route, 2) and waypoints (n_waypoints, 2) in the ego frame (batch 1).
        """
        t0 = time.perf_counter()
        self._check_open()
        core = self.core
        if core.error is None:
            missed = self.scheduler.before_step(frame)  # pipelined: publish what is due; async: first wait
            if core.error is None and missed is not None:
                return core.stop(t0, STOP_DEADLINE, missed, frame, sim_time, core.store.front_meta)
        if core.error is not None:
            return core.stop(t0, STOP_FAILED, core.failure_reason(), frame, sim_time)
        return core.fast_step(state, sim_time, frame, t0)

    def stats(self) -> dict[str, Any]:
        """Latency / staleness percentiles, counters, and the slow-path error if any."""
        core = self.core
        snap = self.telemetry.snapshot()
        counters = snap.pop("counters")
        thread = self.scheduler.thread
        return {
            "mode": self.config.mode,
            "engine": self.engine.name,
            "scene_encoder": None if self.scene_encoder is None else type(self.scene_encoder.encoder).__name__,
            "scene_engine": None if self.scene_encoder is None else self.scene_encoder.engine_name,
            "capacity": self.capacity,
            "threads": {"fast": self.threads_fast, "slow": self.threads_slow},
            "snapshot_version": self.store.version,
            "steps": counters.get("steps", 0),
            "observations": counters.get("observations", 0),
            "refreshes": counters.get("refreshes", 0),
            "dropped_observations": counters.get("dropped_observations", 0),
            # refresh budget: sync/blocking submits that gave up waiting / skipped a due refresh because one was
            # still running; refreshes that finished over budget; late ones not published (an equal or newer
            # snapshot was front); async steps that waited for the first snapshot (at most 1)
            "refresh_timeouts": counters.get("refresh_timeouts", 0),
            "skipped_refreshes": counters.get("skipped_refreshes", 0),
            "late_refreshes": counters.get("late_refreshes", 0),
            "discarded_refreshes": counters.get("discarded_refreshes", 0),
            "first_snapshot_waits": counters.get("first_snapshot_waits", 0),
            **self.scheduler.stats(),  # "pipeline": the pipelined schedule's counters, None in other modes
            "refresh_running_s": core.running_s(),
            "writer_waits": self.store.write_waits,
            "worker_alive": bool(thread and thread.is_alive()),
            "slow_path_error": None if core.error is None else repr(core.error),
            "slow_path_traceback": core.error_tb,
            **snap,
        }

    def close(self) -> None:
        """Stop the worker (after its in-flight refresh, never publishing it) and release engine, log and files."""
        core = self.core
        with core.cond:
            if core.closed:
                return
            core.closed = True
            core.cond.notify_all()
        self.store.notify()
        try:
            self.close_problem = self.scheduler.join()
            if self.close_problem is not None:
                log.error("%s", self.close_problem)
        finally:
            core.release()

    def __enter__(self) -> AutoMoTRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ scene tokens
    @property
    def needs_scene(self) -> bool:
        """The model has scene tokens: every step needs ``scene`` or ``scene_inputs``."""
        return self.core.needs_scene

    @property
    def needs_scene_inputs(self) -> bool:
        """The model has scene tokens and an attached encoder: callers should send raw ``scene_inputs``."""
        return self.scene_encoder is not None

    @property
    def scene_config(self) -> Any:
        """The attached encoder's config (model/released BEVConfig: crop, LiDAR grid, mounting), or None."""
        return None if self.scene_encoder is None else self.scene_encoder.config

    @property
    def scene_input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes (no batch dim) the encoder expects per ``scene_inputs`` key; empty without an encoder."""
        return {} if self.scene_encoder is None else dict(self.scene_encoder.input_shapes)

    # ------------------------------------------------------------------ helpers for tests / bench
    @property
    def snapshot_version(self) -> int:
        return self.store.version

    @property
    def refresh_in_progress(self) -> bool:
        return self.core.refreshing

    @property
    def refresh_overrun(self) -> str | None:
        """The running refresh that is over its wall-clock budget, as the next output would name it (or None)."""
        return self.core.overrun_note()

    @property
    def error(self) -> BaseException | None:
        return self.core.error

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or refreshing (True), the runtime failed, or the timeout passed."""
        with self.core.cond:
            return self.core.cond.wait_for(lambda: self.scheduler.idle() or self.core.error is not None, timeout)

    def _check_open(self) -> None:
        if self.core.closed:
            raise RuntimeError("the runtime is closed")


def build_runtime(
    model_or_preset: Any,
    mode: str | None = None,
    engine: str | None = None,
    config: RuntimeConfig | None = None,
    device: str = "cpu",
    **opts: Any,
) -> AutoMoTRuntime:
    """Build a runtime from a model, a preset name or an AutoMoTConfig.

    ``mode`` / ``engine`` / ``opts`` are RuntimeConfig fields and override ``config`` (defaults: async, torch).
    """
    if isinstance(model_or_preset, torch.nn.Module):
        model = model_or_preset
    else:
        from automot.model import build_model

        model = build_model(model_or_preset, device=device)
    if mode is not None:
        opts["mode"] = mode
    if engine is not None:
        opts["engine"] = engine
    cfg = RuntimeConfig.from_options(config, **opts)
    return AutoMoTRuntime(model, cfg)
