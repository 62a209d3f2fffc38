"""The dual-rate runtime the agent talks to: ``submit`` feeds the slow path, ``step`` runs the fast path now.

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

import contextlib
import logging
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from automot.runtime.buffers import DoubleBufferedKV, SnapshotMeta
from automot.runtime.config import RuntimeConfig
from automot.runtime.engines import FastEngine, create_engine, create_scene_engine
from automot.runtime.pipeline import PipelineMixin, _PipelineJob
from automot.runtime.scene import SceneEncoderRunner, attached_scene_encoder
from automot.runtime.telemetry import JsonlLog, Telemetry
from automot.runtime.threads import _lower_thread_priority, _set_torch_threads
from automot.runtime.types import DrivingObservation, DrivingState, RuntimeOutput

log = logging.getLogger(__name__)

STOP_NO_SNAPSHOT = "no_snapshot"
STOP_STALE = "stale_snapshot"
STOP_FAILED = "slow_path_failed"
STOP_SCENE = "scene_missing"
STOP_DEADLINE = "deadline_miss"


class AutoMoTRuntime(PipelineMixin):
    """Owns the KV double buffer, the fast engine and (in async mode) the slow-path worker thread."""

    def __init__(self, model: torch.nn.Module, config: RuntimeConfig, engine: FastEngine | None = None) -> None:
        self.model = model
        self.config = config
        mc = model.config
        self.capacity = config.capacity or mc.max_prefix_tokens
        param = next(model.parameters())
        self.device = param.device
        self.threads_fast, self.threads_slow = config.resolved_threads()
        self.store = DoubleBufferedKV(
            mc.num_layers, mc.num_kv_heads, self.capacity, mc.head_dim, batch=1, dtype=param.dtype, device=self.device
        )
        self.telemetry = Telemetry(config.stats_window)
        self._workdir = tempfile.TemporaryDirectory(prefix="automot-runtime-")
        if engine is None:
            engine = create_engine(
                config.engine,
                model,
                self.capacity,
                self.threads_fast,
                self._workdir.name,
                engine_file=config.engine_file,
                compile_backend=config.compile_backend,
                trt_precision=config.trt_precision,
            )
        self.engine = engine
        self.scene_encoder: SceneEncoderRunner | None = None
        attached = attached_scene_encoder(model) if mc.tokens.num_scene_tokens else None
        if attached is not None:
            # Share the engine's high-priority CUDA stream (torch / TensorRT engines have one) so the encoder and
            # the action step are ordered on the fast stream; fast_stream() makes one otherwise.
            try:
                self.scene_encoder = SceneEncoderRunner(
                    attached[0],
                    attached[1],
                    mc.tokens.num_scene_tokens,
                    mc.tokens.scene_dim,
                    self.device,
                    param.dtype,
                    stream=getattr(self.engine, "stream", None),
                )
                # ONNX Runtime / TensorRT: the encoder runs as its own exported engine too (after the move above,
                # so an export here is in the model's device/dtype); torch engines keep the eager encoder.
                self.scene_encoder.backend = create_scene_engine(
                    config.engine,
                    self.scene_encoder.encoder,
                    self.threads_fast,
                    self._workdir.name,
                    device=self.device,
                    engine_file=config.scene_engine_file,
                    trt_precision=config.trt_precision,
                    stream=getattr(self.engine, "stream", None),
                )
            except Exception:  # a bev_config that does not fit the model / a failed export: release, then raise
                if self.scene_encoder is not None:
                    self.scene_encoder.close()
                self.engine.close()
                self._workdir.cleanup()
                raise
        self._jsonl = JsonlLog(config.jsonl_log) if config.jsonl_log else None
        self._cond = threading.Condition()  # guards everything below
        self._pending: tuple[DrivingObservation, float, int] | None = None
        self._submitted = 0
        self._refreshing = False
        self._job: tuple[int, float, float | None, str] | None = None  # running refresh: frame, start, budget, name
        self._first_wait_done = False  # async: step waits for the first snapshot once, never again
        self._closed = False
        self.close_problem: str | None = None  # set when close() gave up on a refresh that never returned
        self._passes = (-1, 0)  # (snapshot version, action passes run on it): reused_prefix_position_shifts
        self._error: BaseException | None = None
        self._error_tb: str | None = None
        self._torch_fast_path = self.engine.name in ("torch", "torch-compile")
        cuda = self.device.type == "cuda" and torch.cuda.is_available()
        self._slow_stream = torch.cuda.Stream(device=self.device, priority=0) if cuda else None
        self._thread: threading.Thread | None = None
        self._saved_switch_interval: float | None = None
        self._jobs: deque[_PipelineJob] = deque()  # pipelined: scheduled refreshes not yet published, in frame order
        # pipelined: refreshes in flight in a healthy pipeline are at most ceil((K + 1) / N); more means a refresh is
        # hung (its due ticks miss their deadline anyway), so further ones are skipped instead of queued without end
        self._max_jobs = config.latency_ticks // config.refresh_every + 2
        if config.overlapping and config.switch_interval_s is not None:
            # The fast path re-takes the GIL after every C call; with Python's default 5 ms interval a worker
            # busy in Python code (image preprocessing) can hold it that long each time.
            self._saved_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(config.switch_interval_s)
        if config.mode == "async":
            self._thread = threading.Thread(target=self._worker, name="automot-slow-path", daemon=True)
            self._thread.start()
        elif config.mode == "pipelined":
            self._thread = threading.Thread(target=self._pipeline_worker, name="automot-pipeline", daemon=True)
            self._thread.start()
        elif config.refresh_timeout_s is not None:
            # sync/blocking with a budget: the refresh runs here and submit waits for it at most the budget, so a
            # hung refresh cannot block the tick. Daemon: a refresh that never returns cannot block interpreter exit.
            self._thread = threading.Thread(target=self._worker, name="automot-refresh", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ agent API
    def submit(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        """Hand the newest frames/prompt to the slow path (async: queue, latest wins; sync/blocking: maybe refresh now)."""
        self._check_open()
        mode = self.config.mode
        with self._cond:
            self._submitted += 1
            self.telemetry.count("observations")
            if mode == "async":
                if self._pending is not None:
                    self.telemetry.count("dropped_observations")  # superseded before the worker got to it
                self._pending = (observation, sim_time, frame)
                self._cond.notify_all()
                return
        if self._error is not None:
            return  # a failed runtime only safe-stops; the error is already recorded
        if mode == "pipelined":
            self._schedule(observation, sim_time, frame)
            return
        due = mode == "blocking" or self.store.version == 0 or frame % self.config.sync_every == 0
        if not due:
            return
        if self._thread is None:  # refresh_timeout_s=None: no budget, refresh inline in the calling thread
            _set_torch_threads(self.threads_slow)
            try:
                self._refresh(observation, sim_time, frame)
            except Exception as exc:  # kept, logged and reported by every later step, as in async mode
                self._fail(exc)
            return
        with self._cond:
            if self._refreshing or self._pending is not None:
                # The previous refresh overran its budget and still runs: one refresh at a time, and no wait.
                self.telemetry.count("skipped_refreshes")
                return
            first = self.store.version == 0
            budget = self.config.first_snapshot_timeout_s if first else self.config.refresh_timeout_s
            name = "first_snapshot_timeout_s" if first else "refresh_timeout_s"
            # The budget runs from now, so a step after a timed-out wait always sees the overrun.
            self._job = (frame, time.perf_counter(), budget, name)
            self._pending = (observation, sim_time, frame)
            self._cond.notify_all()
            done = self._cond.wait_for(
                lambda: (self._pending is None and not self._refreshing) or self._error is not None or self._closed,
                budget,
            )
        if not done:
            self.telemetry.count("refresh_timeouts")
            log.warning(
                "refresh of frame %d exceeded its budget (%s=%g s); it keeps running in the background, ticks use "
                "the previous snapshot within the age limits or stop",
                frame,
                name,
                budget,
            )

    def step(self, state: DrivingState, sim_time: float, frame: int) -> RuntimeOutput:
        """Run the fast path on the newest published snapshot, or return a flagged safe stop.

        ``state``: target_points (2, 2) ego frame, speed (m/s), optional scene (N_scene, D_scene) or scene_inputs.
        The RuntimeOutput carries path (n_route, 2) and waypoints (n_waypoints, 2) in the ego frame (batch 1).
        """
        t0 = time.perf_counter()
        self._check_open()
        if self._error is not None:
            return self._stop(t0, STOP_FAILED, self._failure_reason(), frame, sim_time)
        if self.config.mode == "pipelined":
            missed = self._publish_due(frame)
            if self._error is not None:
                return self._stop(t0, STOP_FAILED, self._failure_reason(), frame, sim_time)
            if missed is not None:
                return self._stop(t0, STOP_DEADLINE, missed, frame, sim_time, self.store.front_meta)
        if self.config.mode == "async" and self.store.version == 0 and self._submitted and not self._first_wait_done:
            # Before the first snapshot: wait for it once (bounded) instead of stopping on the first warm-up tick;
            # if it does not come in time, later steps stop at once until it does (never 10 s per tick).
            self._first_wait_done = True
            self.telemetry.count("first_snapshot_waits")
            self.store.wait(
                lambda: self.store.version > 0 or self._error is not None or self._closed,
                self.config.first_snapshot_timeout_s,
            )
            if self._error is not None:
                return self._stop(t0, STOP_FAILED, self._failure_reason(), frame, sim_time)
        overrun = self._overrun_note()
        t_fast = time.perf_counter()  # fast_step_ms excludes a first-snapshot wait; the tick latency includes it
        if self._torch_fast_path or (self.scene_encoder is not None and self.scene_encoder.backend is None):
            _set_torch_threads(self.threads_fast)  # per calling thread; a no-op once set
        scene, scene_ms = state.scene, None
        if scene is None and self.needs_scene:
            problem = self._scene_problem(state)
            if problem is not None:
                return self._stop(t0, STOP_SCENE, problem, frame, sim_time)
            # Before pinning the front slot: the encoder is the longest part of the step, and a pinned slot
            # would make a publishing writer wait for it.
            scene, scene_ms = self.scene_encoder(state.scene_inputs)
            self.telemetry.record("scene_encoder_ms", scene_ms)
        action_state = self.model.build_state(
            np.asarray(state.target_points, dtype=np.float32),
            float(state.speed),
            state.scene if scene_ms is None else None,
        )
        if scene_ms is not None:
            action_state = replace(action_state, scene=scene)
        with self.store.read() as view:
            if view is None:
                reason = "no snapshot yet (no refresh has completed)"
                return self._stop(t0, STOP_NO_SNAPSHOT, _join(reason, overrun), frame, sim_time, overrun=overrun)
            meta = view.meta
            age_ticks, age_s = frame - meta.frame, sim_time - meta.sim_time
            too_old = self._too_old(age_ticks, age_s)
            if too_old:
                return self._stop(t0, STOP_STALE, _join(too_old, overrun), frame, sim_time, meta, overrun)
            path, waypoints, logits = self.engine(
                view.keys,
                view.values,
                view.pad_mask,
                self._action_start(meta.version, view.next_position),
                action_state.target_points,
                action_state.speed,
                action_state.scene,
            )
        decision = self.model.decode_decision(torch.from_numpy(logits))[0]
        fast_ms = (time.perf_counter() - t_fast) * 1e3
        out = RuntimeOutput(
            path=path[0],
            waypoints=waypoints[0],
            decision_text=decision,
            reasoning_text=meta.reasoning_text,
            snapshot_version=meta.version,
            snapshot_frame=meta.frame,
            snapshot_sim_time=meta.sim_time,
            age_ticks=age_ticks,
            age_s=age_s,
            fast_step_ms=fast_ms,
            refresh_overrun=overrun,
            snapshot_refresh_ms=float(meta.refresh_ms),
        )
        if scene_ms is not None:
            out.extras["scene_encoder_ms"] = scene_ms  # part of fast_step_ms
        self._record(out, t0, frame, sim_time, None)
        return out

    def _action_start(self, version: int, next_position: torch.Tensor) -> torch.Tensor:
        """First action position for this pass: P, or P + k * n_action on the k-th reuse (released quirk)."""
        cap = self.config.reused_prefix_position_shifts
        if cap == 0:
            return next_position
        seen_version, passes = self._passes
        k = passes if seen_version == version else 0
        self._passes = (version, k + 1)
        return next_position + min(k, cap) * self.model.config.num_action_tokens

    def stats(self) -> dict[str, Any]:
        """Latency / staleness percentiles, counters, and the slow-path error if any."""
        snap = self.telemetry.snapshot()
        counters = snap.pop("counters")
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
            # pipelined: scheduled snapshots that came due, steps that had to wait for theirs (and how long:
            # "pipeline_wait_ms" below), due snapshots not ready within the budget (flagged safe stops)
            "pipeline": None
            if self.config.mode != "pipelined"
            else {
                "latency_ticks": self.config.latency_ticks,
                "refresh_every": self.config.refresh_every,
                "due": counters.get("pipeline_due", 0),
                "waits": counters.get("pipeline_waits", 0),
                "wait_ms_total": round(float(sum(self.telemetry.series("pipeline_wait_ms"))), 4),
                "deadline_misses": counters.get("deadline_misses", 0),
            },
            "refresh_running_s": self._running_s(),
            "writer_waits": self.store.write_waits,
            "worker_alive": bool(self._thread and self._thread.is_alive()),
            "slow_path_error": None if self._error is None else repr(self._error),
            "slow_path_traceback": self._error_tb,
            **snap,
        }

    def close(self) -> None:
        """Stop the worker (after its in-flight refresh, never publishing it) and release engine, log and files."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self.store.notify()
        try:
            if self._thread is not None:
                self._thread.join(self.config.close_timeout_s)
                if self._thread.is_alive():
                    # Bounded and reported, not raised: the thread is a daemon (it cannot block interpreter exit),
                    # it never publishes after close, and raising here would mask the caller's own exception.
                    self.close_problem = (
                        f"{self._thread.name} thread still running {self.config.close_timeout_s} s after close() "
                        f"({self._overrun_note() or 'a refresh longer than close_timeout_s'}); left behind as a "
                        "daemon thread that will not publish"
                    )
                    log.error("%s", self.close_problem)
        finally:
            if self._saved_switch_interval is not None and sys.getswitchinterval() == self.config.switch_interval_s:
                sys.setswitchinterval(self._saved_switch_interval)
            self.engine.close()
            if self.scene_encoder is not None:
                self.scene_encoder.close()
            if self._jsonl is not None:
                self._jsonl.close()
            self._workdir.cleanup()

    def __enter__(self) -> AutoMoTRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ scene tokens
    @property
    def needs_scene(self) -> bool:
        """The model has scene tokens: every step needs ``scene`` or ``scene_inputs``."""
        return bool(self.model.config.tokens.num_scene_tokens)

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

    def _scene_problem(self, state: DrivingState) -> str | None:
        t = self.model.config.tokens
        need = f"the model has {t.num_scene_tokens} scene tokens"
        if self.scene_encoder is None:
            return (
                f"{need} but DrivingState.scene is None and no scene encoder is attached to the model (load the "
                "released checkpoint with model.released.load_released/load_converted, or pass precomputed "
                f"({t.num_scene_tokens}, {t.scene_dim}) features as DrivingState.scene)"
            )
        if state.scene_inputs is None:
            return f"{need} but DrivingState has neither scene nor scene_inputs {{'rgb', 'lidar'}}"
        return self.scene_encoder.check(state.scene_inputs)

    # ------------------------------------------------------------------ helpers for tests / bench
    @property
    def snapshot_version(self) -> int:
        return self.store.version

    @property
    def refresh_in_progress(self) -> bool:
        return self._refreshing

    @property
    def refresh_overrun(self) -> str | None:
        """The running refresh that is over its wall-clock budget, as the next output would name it (or None)."""
        return self._overrun_note()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Async: block until nothing is pending or refreshing (True), the runtime failed, or the timeout passed."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    (self._pending is None and not self._refreshing and not self._queued_jobs())
                    or self._error is not None
                ),
                timeout,
            )

    def _queued_jobs(self) -> bool:
        return any(j.status == "queued" for j in self._jobs)

    # ------------------------------------------------------------------ slow path
    def _worker(self) -> None:
        _set_torch_threads(self.threads_slow)  # per-thread under OpenMP: the caller's setting is untouched
        if self.config.mode == "async":  # sync/blocking: the caller waits for the refresh, no bias wanted
            _lower_thread_priority(self.config.slow_nice)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._pending is not None)
                if self._closed:
                    return
                item, self._pending = self._pending, None
                self._refreshing = True
                if self.config.mode == "async":  # sync/blocking: submit set it when it queued the refresh
                    first = self.store.version == 0
                    name = "first_snapshot_timeout_s" if first else "refresh_timeout_s"
                    budget = self.config.first_snapshot_timeout_s if first else self.config.refresh_timeout_s
                    self._job = (item[2], time.perf_counter(), budget, name)
            try:
                self._refresh(*item)
            except BaseException as exc:  # noqa: BLE001 - kept and reported by step()/stats(), thread ends
                self._fail(exc)
                return
            finally:
                with self._cond:
                    job, self._job = self._job, None
                    if job is not None and job[2] is not None and time.perf_counter() - job[1] > job[2]:
                        self.telemetry.count("late_refreshes")
                    self._refreshing = False
                    self._cond.notify_all()

    def _stream_ctx(self) -> Any:
        return torch.cuda.stream(self._slow_stream) if self._slow_stream is not None else contextlib.nullcontext()

    def _compute(self, observation: DrivingObservation) -> tuple[Any, str | None]:
        """The slow path's work for one observation: (prefix snapshot, reasoning text or None)."""
        model_obs = self.model.build_observation(
            list(observation.images), np.asarray(observation.target_points, dtype=np.float32), float(observation.speed)
        )
        with torch.inference_mode(), self._stream_ctx():
            if self.config.reason:
                snap = self.model.reason(model_obs, max_new_tokens=self.config.max_new_tokens)
            else:
                snap = self.model.prefill(model_obs, capacity=self.capacity)
        return snap, (snap.reasoning_text[0] if snap.reasoning_text else None)

    def _publish_snapshot(
        self, snap: Any, reasoning: str | None, frame: int, sim_time: float, t0: float | None, refresh_ms: float = 0.0
    ) -> None:
        """Load ``snap`` into the back KV slot and swap it front (refresh_ms runs from ``t0`` when given)."""
        with self.store.write() as slot, torch.inference_mode(), self._stream_ctx():
            valid = slot.load(snap.keys, snap.values, snap.pad_mask, snap.next_position)
            if self._slow_stream is not None:
                self._slow_stream.synchronize()  # readers must see finished buffers
            if t0 is not None:
                refresh_ms = (time.perf_counter() - t0) * 1e3
            slot.meta = SnapshotMeta(0, frame, sim_time, reasoning, refresh_ms, valid)
        self.telemetry.record("refresh_ms", refresh_ms)
        self.telemetry.count("refreshes")

    def _refresh(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        t0 = time.perf_counter()
        snap, reasoning = self._compute(observation)
        if self._closed:
            return  # never publish after close()
        front = self.store.front_meta
        if front is not None and frame < front.frame:  # only this thread publishes, so front cannot change now
            self.telemetry.count("discarded_refreshes")
            log.warning("refresh of frame %d finished after frame %d was published; not published", frame, front.frame)
            return
        self._publish_snapshot(snap, reasoning, frame, sim_time, t0)

    def _fail(self, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log.error("AutoMoT slow path failed; every step now returns a safe stop:\n%s", tb)
        with self._cond:
            if self._error is None:
                self._error, self._error_tb = exc, tb
            self._cond.notify_all()
        self.store.notify()

    # ------------------------------------------------------------------ fast-path helpers
    def _overrun_note(self) -> str | None:
        """Which refresh is over its wall-clock budget and by how much (None: none is)."""
        job = self._job
        if job is None or job[2] is None:
            return None
        frame, started, budget, name = job
        elapsed = time.perf_counter() - started
        if elapsed <= budget:
            return None
        return f"refresh of frame {frame} still running after {elapsed:.3f} s ({name}={budget:g} s)"

    def _running_s(self) -> float | None:
        job = self._job
        return None if job is None else round(time.perf_counter() - job[1], 6)

    def _failure_reason(self) -> str:
        return f"slow path failed: {self._error!r}"

    def _too_old(self, age_ticks: int, age_s: float) -> str | None:
        c = self.config
        if c.max_snapshot_age_ticks is not None and age_ticks > c.max_snapshot_age_ticks:
            return f"snapshot too old: {age_ticks} ticks > max_snapshot_age_ticks={c.max_snapshot_age_ticks}"
        if c.max_snapshot_age_s is not None and age_s > c.max_snapshot_age_s:
            return f"snapshot too old: {age_s:.3f} s > max_snapshot_age_s={c.max_snapshot_age_s}"
        return None

    def _stop(
        self,
        t0: float,
        kind: str,
        reason: str,
        frame: int,
        sim_time: float,
        meta: SnapshotMeta | None = None,
        overrun: str | None = None,
    ) -> RuntimeOutput:
        out = replace(RuntimeOutput.stop(reason, frame, sim_time), refresh_overrun=overrun)
        if meta is not None:  # say which snapshot was refused and how old it was
            out = replace(
                out,
                reasoning_text=meta.reasoning_text,
                snapshot_version=meta.version,
                snapshot_frame=meta.frame,
                snapshot_sim_time=meta.sim_time,
                age_ticks=frame - meta.frame,
                age_s=sim_time - meta.sim_time,
                snapshot_refresh_ms=float(meta.refresh_ms),
            )
        out.extras["stop_kind"] = kind
        self._record(out, t0, frame, sim_time, kind)
        return out

    def _record(self, out: RuntimeOutput, t0: float, frame: int, sim_time: float, stop_kind: str | None) -> None:
        tick_ms = (time.perf_counter() - t0) * 1e3
        self.telemetry.record_step(tick_ms, out.fast_step_ms, out.age_ticks, out.age_s, stop_kind)
        if self._jsonl is not None:
            self._jsonl.write(
                {
                    "frame": frame,
                    "sim_time": sim_time,
                    "snapshot_version": out.snapshot_version,
                    "snapshot_frame": out.snapshot_frame,
                    "age_ticks": out.age_ticks,
                    "age_s": out.age_s,
                    "fast_step_ms": round(out.fast_step_ms, 4),
                    "tick_ms": round(tick_ms, 4),
                    "decision": out.decision_text,
                    "safe_stop": out.safe_stop,
                    "reason": out.safe_stop_reason,
                    "stop_kind": stop_kind,
                    "refresh_overrun": out.refresh_overrun,
                }
            )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the runtime is closed")


def _join(reason: str, note: str | None) -> str:
    return reason if note is None else f"{reason}; {note}"


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
