"""What every runtime mode shares, and knows no mode: the model, the fast engine (and scene encoder), the KV double
buffer, telemetry, the slow path's work (``compute`` / ``publish`` / ``refresh``) and the fast step.

When the slow path runs is the scheduler's business (runtime/schedulers.py, runtime/pipeline.py); the core only
holds the state they coordinate on (``cond``, ``error``, ``closed``, the ``running`` refresh).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
import traceback
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from automot.runtime.buffers import DoubleBufferedKV, SnapshotMeta
from automot.runtime.config import RuntimeConfig
from automot.runtime.engines import FastEngine, create_engine, create_scene_engine
from automot.runtime.refresh import RefreshJob
from automot.runtime.scene import SceneEncoderRunner, attached_scene_encoder
from automot.runtime.telemetry import JsonlLog, Telemetry
from automot.runtime.threads import set_torch_threads, torch_threads
from automot.runtime.types import DrivingObservation, DrivingState, RuntimeOutput

log = logging.getLogger("automot.runtime.runtime")  # one logger for the runtime: messages keep their source

STOP_NO_SNAPSHOT = "no_snapshot"
STOP_STALE = "stale_snapshot"
STOP_FAILED = "slow_path_failed"
STOP_SCENE = "scene_missing"
STOP_DEADLINE = "deadline_miss"


class RuntimeCore:
    """Engines, double buffer, telemetry and the two paths' work for one model and one RuntimeConfig."""

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
            self._attach_scene_encoder(attached, param.dtype)
        self._jsonl = JsonlLog(config.jsonl_log) if config.jsonl_log else None
        self.cond = threading.Condition()  # guards error, closed, running, refreshing and the schedulers' queues
        self.error: BaseException | None = None
        self.error_tb: str | None = None
        self.closed = False
        self.running: RefreshJob | None = None  # the refresh whose budget runs now (names an overrun)
        self.refreshing = False  # a worker is computing a refresh
        self._passes = (-1, 0)  # (snapshot version, action passes run on it): reused_prefix_position_shifts
        self._torch_fast_path = self.engine.name in ("torch", "torch-compile")
        cuda = self.device.type == "cuda" and torch.cuda.is_available()
        self._slow_stream = torch.cuda.Stream(device=self.device, priority=0) if cuda else None

    def _attach_scene_encoder(self, attached: tuple[Any, Any], dtype: torch.dtype) -> None:
        tokens = self.model.config.tokens
        # Share the engine's high-priority CUDA stream (torch / TensorRT engines have one) so the encoder and the
        # action step are ordered on the fast stream; fast_stream() makes one otherwise.
        stream = getattr(self.engine, "stream", None)
        try:
            self.scene_encoder = SceneEncoderRunner(
                attached[0], attached[1], tokens.num_scene_tokens, tokens.scene_dim, self.device, dtype, stream=stream
            )
            # ONNX Runtime / TensorRT: the encoder runs as its own exported engine too (after the move above, so an
            # export here is in the model's device/dtype); torch engines keep the eager encoder.
            self.scene_encoder.backend = create_scene_engine(
                self.config.engine,
                self.scene_encoder.encoder,
                self.threads_fast,
                self._workdir.name,
                device=self.device,
                engine_file=self.config.scene_engine_file,
                trt_precision=self.config.trt_precision,
                stream=stream,
            )
        except Exception:  # a bev_config that does not fit the model / a failed export: release, then raise
            if self.scene_encoder is not None:
                self.scene_encoder.close()
            self.engine.close()
            self._workdir.cleanup()
            raise

    # ------------------------------------------------------------------ slow path
    def _stream_ctx(self) -> Any:
        return torch.cuda.stream(self._slow_stream) if self._slow_stream is not None else contextlib.nullcontext()

    def compute(self, observation: DrivingObservation) -> tuple[Any, str | None]:
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

    def finish_slow_stream(self) -> None:
        """CUDA: wait for the slow stream, so a step on another stream may publish what ``compute`` returned."""
        if self._slow_stream is not None:
            self._slow_stream.synchronize()

    def publish(
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

    def refresh(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        """Compute and publish at once, unless the runtime closed meanwhile or a newer frame is already front."""
        t0 = time.perf_counter()
        snap, reasoning = self.compute(observation)
        if self.closed:
            return  # never publish after close()
        front = self.store.front_meta
        if front is not None and frame < front.frame:  # one worker publishes, so front cannot change now
            self.telemetry.count("discarded_refreshes")
            log.warning("refresh of frame %d finished after frame %d was published; not published", frame, front.frame)
            return
        self.publish(snap, reasoning, frame, sim_time, t0)

    def fail(self, exc: BaseException) -> None:
        """Keep the slow path's failure: every later step is a flagged safe stop naming it."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log.error("AutoMoT slow path failed; every step now returns a safe stop:\n%s", tb)
        with self.cond:
            if self.error is None:
                self.error, self.error_tb = exc, tb
            self.cond.notify_all()
        self.store.notify()

    def failure_reason(self) -> str:
        return f"slow path failed: {self.error!r}"

    def overrun_note(self) -> str | None:
        """Which refresh is over its wall-clock budget and by how much (None: none is)."""
        job = self.running
        return None if job is None else job.overrun_note()

    def running_s(self) -> float | None:
        job = self.running
        return None if job is None else round(job.elapsed(), 6)

    # ------------------------------------------------------------------ fast path
    @property
    def needs_scene(self) -> bool:
        return bool(self.model.config.tokens.num_scene_tokens)

    def fast_step(self, state: DrivingState, sim_time: float, frame: int, t0: float) -> RuntimeOutput:
        """The action pass on the front snapshot (``t0``: when the tick's ``step`` began), or a flagged stop."""
        if self._torch_fast_path or (self.scene_encoder is not None and self.scene_encoder.backend is None):
            set_torch_threads(self.threads_fast)  # torch engine / eager encoder: the calling thread keeps it
        # Every engine: the step also runs torch ops of its own in the calling thread (build_state, decode_decision).
        # At a count above threads_fast there, an op large enough to go parallel leaves an OpenMP pool thread
        # spinning after it, a third busy thread next to the slow path on a 2-core machine (runtime/README.md
        # "Threads"); the caller's own count is back after the step.
        with torch_threads(self.threads_fast):
            return self._fast_step(state, sim_time, frame, t0)

    def _fast_step(self, state: DrivingState, sim_time: float, frame: int, t0: float) -> RuntimeOutput:
        overrun = self.overrun_note()
        t_fast = time.perf_counter()  # fast_step_ms excludes a scheduler's wait; the tick latency includes it
        scene, scene_ms = state.scene, None
        if scene is None and self.needs_scene:
            problem = self._scene_problem(state)
            if problem is not None:
                return self.stop(t0, STOP_SCENE, problem, frame, sim_time)
            # Before pinning the front slot: the encoder is the longest part of the step, and a pinned slot
            # would make a publishing writer wait for it.
            assert self.scene_encoder is not None and state.scene_inputs is not None
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
                reason = _join("no snapshot yet (no refresh has completed)", overrun)
                return self.stop(t0, STOP_NO_SNAPSHOT, reason, frame, sim_time, overrun=overrun)
            meta = view.meta
            age_ticks, age_s = frame - meta.frame, sim_time - meta.sim_time
            too_old = self._too_old(age_ticks, age_s)
            if too_old:
                return self.stop(t0, STOP_STALE, _join(too_old, overrun), frame, sim_time, meta, overrun)
            # The model's action pass (AutoMoTModel.fast_step, the form of ``act`` the engines export) on the
            # pinned front slot.
            path, waypoints, logits = self.engine(
                view.keys,
                view.values,
                view.pad_mask,
                self._action_start(meta.version, view.next_position),
                action_state.target_points,
                action_state.speed,
                action_state.scene,
            )
        # NumPy in and out: no torch op after the engine (model/decision_vocab.py DecisionVocabulary.decode)
        (decision,) = self.model.decode_decision(logits)
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
            fast_step_ms=(time.perf_counter() - t_fast) * 1e3,
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

    def _too_old(self, age_ticks: int, age_s: float) -> str | None:
        c = self.config
        if c.max_snapshot_age_ticks is not None and age_ticks > c.max_snapshot_age_ticks:
            return f"snapshot too old: {age_ticks} ticks > max_snapshot_age_ticks={c.max_snapshot_age_ticks}"
        if c.max_snapshot_age_s is not None and age_s > c.max_snapshot_age_s:
            return f"snapshot too old: {age_s:.3f} s > max_snapshot_age_s={c.max_snapshot_age_s}"
        return None

    def stop(
        self,
        t0: float,
        kind: str,
        reason: str,
        frame: int,
        sim_time: float,
        meta: SnapshotMeta | None = None,
        overrun: str | None = None,
    ) -> RuntimeOutput:
        """A flagged safe stop of kind ``kind`` (``extras["stop_kind"]``), recorded like a step."""
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

    # ------------------------------------------------------------------ lifetime
    def release(self) -> None:
        """Free the engines, the log and the temporary files (after the scheduler's thread was stopped)."""
        self.engine.close()
        if self.scene_encoder is not None:
            self.scene_encoder.close()
        if self._jsonl is not None:
            self._jsonl.close()
        self._workdir.cleanup()


def _join(reason: str, note: str | None) -> str:
    return reason if note is None else f"{reason}; {note}"
