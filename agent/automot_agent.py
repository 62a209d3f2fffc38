"""AutoMoT leaderboard agent: ``--agent agent/automot_agent.py`` (entry point ``AutoMoTAgent``).

The leaderboard imports this file as a top-level module with its folder on ``sys.path``, so project code is
imported under the one installed root (``automot.agent``, ``automot.runtime``); the project must be installed.

Per tick: decode and validate ``input_data`` -> GNSS/compass measurement -> pose estimate (raw or UKF, fed the
previous tick's control) -> LiDAR half sweep pushed at that pose (when the runtime's model has a scene encoder) ->
route planner target points (ego frame) -> after warm-up: parking-escape update and target-point override,
BEV encoder inputs, ``runtime.submit`` + ``runtime.step`` -> PID controllers and safety rules -> VehicleControl.
``run_step`` never raises (unless ``strict``): any failure is logged with its traceback and answered with a
full brake.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from automot.agent import input_recorder
from automot.agent.bench2drive_io import Bench2DriveWriter, estimate_metric_info, resolve_save_name
from automot.agent.config import AgentConfig, config_to_dict, load_agent_config
from automot.agent.contract import AutonomousAgent, Track, make_control, road_option_value, transform_xy
from automot.agent.control import ControlCommand, DrivingController, EscapePolicy
from automot.agent.escape import ParkingEscape
from automot.agent.geometry import (
    DEFAULT_LAT_REF,
    DEFAULT_LON_REF,
    compass_to_yaw,
    gps_to_local,
    solve_georeference,
)
from automot.agent.gnss_gate import IGNORE, REANCHOR, GnssGate
from automot.agent.inputs import FrameHistory, InputError, SensorFrame, describe, parse_input_data
from automot.agent.recorder import Recorder, TickRecord
from automot.agent.rigs import GNSS, Rig, get_rig, validate_sensors
from automot.agent.route_planner import RoutePlanner
from automot.agent.runtime_factory import RuntimeFactory, build_runtime, check_runtime
from automot.agent.scene_inputs import SceneInputBuilder, default_bev_config
from automot.agent.state_estimation import Control, EgoState, StateEstimator, build_estimator
from automot.geometry import world_to_ego
from automot.runtime.types import DrivingObservation, DrivingRuntime, DrivingState, RuntimeOutput

# Fixed name: this file is imported as ``automot_agent`` by the evaluator and as ``agent.automot_agent`` by tests.
log = logging.getLogger("automot.agent.automot_agent")

SIM_DT = 0.05  # leaderboard tick (20 Hz), used when a timestamp is unusable


class TickContext(NamedTuple):
    """The tick's inputs the Bench2Drive writer needs besides the TickRecord (None on a failed tick)."""

    sensors: SensorFrame  # the parsed sensors (GNSS altitude and IMU feed the estimated metric info)
    position: np.ndarray  # (2,) estimated ego position, CARLA world metres
    yaw: float  # estimated ego yaw, radians
    command: int  # route command (RoadOption value) of the current target point


def recorder_dir(configured: str | None, save_name: str) -> Path:
    """Where this route's video and tick log go.

    ``AUTOMOT_RECORD_DIR`` (set by ``automot drive --out DIR``) wins and is used as is, so one run's files sit
    next to its results.json; otherwise ``<recorder.out_dir | $SAVE_PATH | runs/agent>/<save_name>/``.
    """
    override = os.environ.get("AUTOMOT_RECORD_DIR")
    if override:
        return Path(override)
    return Path(configured or os.environ.get("SAVE_PATH") or "runs/agent") / save_name


def get_entry_point() -> str:
    """Class name the leaderboard instantiates."""
    return "AutoMoTAgent"


class AutoMoTAgent(AutonomousAgent):
    """Leaderboard agent wrapping the AutoMoT dual-rate runtime.

    Keyword-only extras (the leaderboard passes none): ``runtime_factory(cfg) -> runtime`` replaces
    ``agent.runtime_factory.build_runtime``; ``metric_info_fn() -> dict`` supplies Bench2Drive's metric info
    (e.g. from a simulator's ground truth); ``escape_policy`` replaces the parking escape that ``setup`` builds
    when ``control.escape.enabled`` is set (it is then used whatever the config says).
    After each ``run_step``: ``last_control``, ``last_output`` (RuntimeOutput or None) and ``last_record``.
    """

    def __init__(
        self,
        carla_host: str = "localhost",
        carla_port: int = 2000,
        debug: bool = False,
        *,
        runtime_factory: RuntimeFactory | None = None,
        metric_info_fn: Callable[[], dict] | None = None,
        escape_policy: EscapePolicy | None = None,
    ) -> None:
        super().__init__(carla_host, carla_port, debug)
        self.runtime_factory: RuntimeFactory = runtime_factory or build_runtime
        self.metric_info_fn = metric_info_fn
        self._given_escape = escape_policy
        self.escape_policy: EscapePolicy | None = escape_policy
        self.estimator: StateEstimator | None = None
        self.config = AgentConfig()
        self.save_name = ""
        self.rig: Rig | None = None
        self.runtime: DrivingRuntime | None = None
        self.recorder: Recorder | None = None
        self.b2d: Bench2DriveWriter | None = None
        self.controller: DrivingController | None = None
        self.planner: RoutePlanner | None = None
        self.history: FrameHistory | None = None
        self.scene_builder: SceneInputBuilder | None = None
        self.georeference = (DEFAULT_LAT_REF, DEFAULT_LON_REF)
        self.step = -1
        self.last_control: Any = None
        self.last_output: RuntimeOutput | None = None
        self.last_record: TickRecord | None = None
        self._route_ready = False
        self._last_compass = 0.0
        self._prev_control: Control = (0.0, 0.0, 0.0)  # what the UKF's process model is driven with
        self._last_error: str | None = None
        self._last_stop_reason: str | None = None
        self._destroyed = False
        self._b2d_failures = 0
        self.gnss_gate: GnssGate | None = None
        self._ignored_fixes = 0  # consecutive ticks without a usable GNSS fix
        self._last_gps: np.ndarray | None = None  # last usable [lat, lon, alt] (altitude for the metric info)
        self._flag_counts: Counter[str] = Counter()  # input flags per kind, for rate-limited logging

    # ------------------------------------------------------------------ leaderboard contract

    def setup(self, path_to_conf_file: str) -> None:
        """Load the YAML config (``CONFIG.yaml`` or Bench2Drive's ``CONFIG.yaml+save_name``) and build the parts.

        Raises ConfigError for a bad config and RuntimeUnavailableError when the runtime cannot be built.
        """
        self.track = Track.SENSORS
        conf_path, self.save_name = resolve_save_name(path_to_conf_file)
        cfg = self.config = load_agent_config(conf_path)
        self.rig = get_rig(cfg.rig, cfg.image_size)
        self.estimator = build_estimator(cfg.state_estimator, cfg.ukf)
        g = cfg.gnss
        self.gnss_gate = GnssGate(g.max_speed, g.jump_noise_m, g.jump_confirm_ticks, tick_s=SIM_DT)
        self.planner = RoutePlanner(cfg.route)
        self.escape_policy = self._given_escape
        if self.escape_policy is None and cfg.control.escape.enabled:
            self.escape_policy = ParkingEscape(cfg.control.escape, self.planner)
        self.controller = DrivingController(cfg.control, escape=self.escape_policy)
        self.history = FrameHistory(cfg.history.buffer_len, cfg.history.offsets)
        self.b2d = Bench2DriveWriter.from_env(self.save_name, cfg.bench2drive)
        if cfg.recorder.video or cfg.recorder.ticks_jsonl:
            camera = self.rig.get(self.rig.primary_camera)
            self.recorder = Recorder(recorder_dir(cfg.recorder.out_dir, self.save_name), camera, cfg.recorder)
        self.runtime = check_runtime(self.runtime_factory(cfg))
        if input_recorder.wanted(cfg):  # automot replay's inputs: the runtime wrapped, every submit/step recorded
            cfg.record_inputs = True
            folder = recorder_dir(cfg.recorder.out_dir, self.save_name)
            self.runtime = input_recorder.wrap_runtime(self.runtime, cfg, folder, config_to_dict(cfg), self.rig)
        self.scene_builder = self._scene_builder()
        log.info(
            "AutoMoT agent ready: rig %s, runtime %s/%s, state %s, escape %s, save_name %s",
            cfg.rig,
            cfg.runtime.mode,
            cfg.runtime.engine,
            cfg.state_estimator,
            "on" if self.escape_policy is not None else "off",
            self.save_name,
        )

    def _scene_builder(self) -> SceneInputBuilder | None:
        """A BEV-input builder when the runtime asks for raw scene inputs (the runtime knows the model, we do not)."""
        if not getattr(self.runtime, "needs_scene_inputs", False):
            return None
        bev_cfg = getattr(self.runtime, "scene_config", None)
        if bev_cfg is None:
            # TF++ defaults: docs/released-agent.md §3
            log.warning("the runtime exposes no scene_config: BEV inputs use the TF++ defaults")
            bev_cfg = default_bev_config()
        if self.config.state_estimator != "ukf":
            # The previous LiDAR half sweep is re-aligned with this pose; leaderboard GNSS noise (~0.5 m) would
            # smear it by a few histogram cells every tick. The released agent uses the UKF here.
            log.warning(
                "BEV encoder inputs with state_estimator %r: set state_estimator: ukf as released",
                self.config.state_estimator,
            )
        return SceneInputBuilder(bev_cfg, self.rig)

    def sensors(self) -> list[dict]:
        """The configured rig as leaderboard sensor dicts (validated against the SENSORS-track limits)."""
        rig = self.rig or get_rig(self.config.rig, self.config.image_size)
        specs = rig.to_leaderboard()
        validate_sensors(specs)
        return specs

    def run_step(self, input_data: dict, timestamp: float) -> Any:
        """One tick; returns a VehicleControl and never raises unless ``strict`` is set."""
        self.step += 1
        if self.wallclock_t0 is None:
            self.wallclock_t0 = time.time()
        try:
            control = self._drive(input_data, timestamp)
            self._last_error = None
        except Exception as exc:
            if self.config.strict:
                raise
            message = f"{type(exc).__name__}: {exc}"
            if message != self._last_error:  # full traceback once per distinct failure, not 20 times a second
                log.exception("run_step failed at tick %d; braking", self.step)
            self._last_error = message
            control = make_control(brake=1.0)
            record = TickRecord(
                frame=self.step,
                sim_time=self._sim_time(timestamp),
                speed=float("nan"),
                steer=0.0,
                throttle=0.0,
                brake=1.0,
                control_mode="error",
                error=message,
            )
            self._emit(record, None)
        self.last_control = control
        self._prev_control = (float(control.steer), float(control.throttle), float(control.brake))
        return control

    def destroy(self) -> None:
        """Close the runtime, the recorder and the Bench2Drive files; errors are logged, not raised."""
        if self._destroyed:
            return
        self._destroyed = True
        stats: dict = {}
        if self.runtime is not None:
            try:
                stats = dict(self.runtime.stats())
            except Exception:
                log.exception("runtime.stats() failed")
            try:
                self.runtime.close()
            except Exception:
                log.exception("runtime.close() failed")
        if self.recorder is not None:
            try:
                self.recorder.close(
                    {"save_name": self.save_name, "runtime_stats": stats, "config": config_to_dict(self.config)}
                )
            except Exception:
                log.exception("recorder close failed")
        if self.b2d is not None:
            try:
                self.b2d.close()
            except Exception:
                log.exception("Bench2Drive output close failed")

    # ------------------------------------------------------------------ tick pipeline

    def _sim_time(self, timestamp: Any) -> float:
        try:
            value = float(timestamp)
        except (TypeError, ValueError):
            value = math.nan
        return value if math.isfinite(value) else max(self.step, 0) * SIM_DT

    def _init_route(self) -> None:
        """Georeference and route planner; deferred to the first tick like the reference agents."""
        self._route_ready = True
        world_plan = self._global_plan_world_coord or []
        gps_plan = self._global_plan or []
        gnss = self.config.gnss
        if gnss.lat_ref is not None and gnss.lon_ref is not None:
            self.georeference = (gnss.lat_ref, gnss.lon_ref)
        elif gnss.solve_from_plan and world_plan and gps_plan:
            try:
                first_gps = gps_plan[0][0]
                self.georeference = solve_georeference(
                    transform_xy(world_plan[0][0]), (first_gps["lat"], first_gps["lon"])
                )
            except Exception:
                log.exception("georeference solve failed; using %.1f/%.1f", DEFAULT_LAT_REF, DEFAULT_LON_REF)
        points = [(np.array(transform_xy(tf)), road_option_value(opt)) for tf, opt in world_plan]
        self.planner.set_route(points)
        log.info("route: %d points, georeference lat %.6f lon %.6f", len(points), *self.georeference)

    def _drive(self, input_data: dict, timestamp: float) -> Any:
        if self.runtime is None or self.rig is None:
            raise RuntimeError("run_step called before setup()")
        tick, sim_time = self.step, self._sim_time(timestamp)
        if not self._route_ready:
            self._init_route()
        if len(self.planner) == 0:
            # Without a route there is nothing to follow; the planner's "50 m ahead" fallback would drive blind.
            raise InputError("global plan", "at least one route point", "an empty plan")
        sensors = parse_input_data(input_data, self.rig)
        image = sensors.images.get(self.rig.primary_camera)
        if image is not None:
            self.history.push(image)
        flags: list[str] = []
        speed = sensors.speed
        if speed < 0.0:  # rolling backwards (the speedometer is signed): the model and controllers expect >= 0
            flags.append(self._flag("speed", f"negative speed {speed:.6g} m/s: used 0"))
            speed = 0.0
        if sensors.compass_problem is not None:  # ignored like a bad GNSS fix: the heading falls back below
            flags.append(self._flag("compass", sensors.compass_problem))
        fallback = self._last_compass if self.config.compass_nan == "last_valid" else 0.0
        measured_yaw = compass_to_yaw(sensors.compass, fallback)
        if math.isfinite(sensors.compass):
            self._last_compass = sensors.compass
        ego = self._estimate(sensors, measured_yaw, speed, sim_time, flags)
        position, yaw = ego.position, ego.yaw  # the estimate is used everywhere below
        if sensors.gps_problem is not None and self._last_gps is not None:
            sensors = dataclasses.replace(sensors, gps=self._last_gps)  # altitude for the metric info

        driving = not self.controller.in_warmup(tick)
        scene_inputs = None
        if self.scene_builder is not None:
            scene_inputs = self.scene_builder.update(sensors, position, yaw, build=driving)
        self.planner.update(position)
        if driving and self.escape_policy is not None:
            self.escape_policy.update(tick, position, yaw)  # may drop route points before the TPs are taken
        targets = self.planner.target_points(position, yaw)
        tp_ego = world_to_ego(targets.stacked(), position, yaw).astype(np.float32)
        record = TickRecord(
            frame=tick,
            sim_time=sim_time,
            speed=speed,
            steer=0.0,
            throttle=0.0,
            brake=1.0,
            control_mode="",
            image=image,
            target_points=tp_ego,
            input_flags=flags,
        )
        record.ego_pose = (float(position[0]), float(position[1]), float(yaw))

        if not driving:
            command = self.controller.hold("warmup")
            record.warmup = True
        else:
            if self.escape_policy is not None:
                tp_ego = np.asarray(self.escape_policy.adjust_target_points(tick, tp_ego), dtype=np.float32)
                record.target_points = tp_ego  # record what the model saw
            self.runtime.submit(DrivingObservation(self.history.select(), tp_ego, speed), sim_time, tick)
            state = DrivingState(tp_ego, speed, scene_inputs=scene_inputs)
            output = self._checked(self.runtime.step(state, sim_time, tick), tick, sim_time)
            self.last_output = output
            record.with_output(output)
            command = self._command(tick, output, speed, position)
        control = make_control(command.throttle, command.steer, command.brake)
        record.steer, record.throttle, record.brake, record.control_mode = (
            control.steer,
            control.throttle,
            control.brake,
            command.mode,
        )
        self._emit(record, TickContext(sensors, position, yaw, targets.command))
        return control

    def _flag(self, kind: str, message: str) -> str:
        """Count an input flag and log it (first of its kind, then every 200th)."""
        self._flag_counts[kind] += 1
        n = self._flag_counts[kind]
        if n == 1 or n % 200 == 0:
            log.warning("tick %d: %s (%s flag #%d)", self.step, message, kind, n)
        return message

    def _estimate(
        self, sensors: SensorFrame, measured_yaw: float, speed: float, sim_time: float, flags: list[str]
    ) -> EgoState:
        """Pose estimate from this tick's GNSS fix, or without it when the fix is unusable or an impossible jump.

        Without a fix the estimator predicts (UKF process model / dead reckoning) and the tick is flagged; with no
        estimate yet, or after ``gnss.max_ignored_ticks`` ticks in a row without a fix, the tick fails (brake).
        """
        gnss_id = next((spec.id for spec in self.rig.sensors if spec.type == GNSS), "GNSS")
        problem = sensors.gps_problem
        if problem is None:
            measured_xy = gps_to_local(sensors.gps[0], sensors.gps[1], *self.georeference)
            if not np.all(np.isfinite(measured_xy)):
                problem = f"lat {sensors.gps[0]}, lon {sensors.gps[1]} project to non-finite metres"
        if problem is None:
            verdict = self.gnss_gate.check(measured_xy, sim_time)
            if verdict.action != IGNORE:
                if verdict.action == REANCHOR:
                    self.estimator.reset()
                    flags.append(self._flag("gnss_reanchor", verdict.flag))
                self._ignored_fixes = 0
                self._last_gps = sensors.gps
                return self.estimator.update(measured_xy, measured_yaw, speed, self._prev_control)
            message, kind = verdict.flag, "gnss_jump"
        else:
            message, kind = f"GNSS fix unusable ({problem}): fix ignored, estimate kept", "gnss_value"
        self._ignored_fixes += 1
        limit = self.config.gnss.max_ignored_ticks
        if self._ignored_fixes > limit:
            raise InputError(gnss_id, f"a usable GNSS fix at least every {limit} ticks", message)
        ego = self.estimator.predict(measured_yaw, speed, self._prev_control)
        if ego is None:
            raise InputError(gnss_id, "a usable first GNSS fix", message)
        flags.append(self._flag(kind, message))
        return ego

    def _command(self, tick: int, output: RuntimeOutput, speed: float, position: np.ndarray) -> ControlCommand:
        if output.safe_stop:
            if output.safe_stop_reason != self._last_stop_reason:
                log.warning("safe stop at tick %d: %s", tick, output.safe_stop_reason)
            self._last_stop_reason = output.safe_stop_reason
            return self.controller.hold("safe_stop")
        if self._last_stop_reason is not None:
            log.info("safe stop cleared at tick %d", tick)
            self._last_stop_reason = None
        return self.controller.step(tick, output.path, output.waypoints, speed, position)

    @staticmethod
    def _checked(output: Any, tick: int, sim_time: float) -> RuntimeOutput:
        """Turn a malformed runtime result into a safe stop instead of feeding garbage to the controllers."""
        if not isinstance(output, RuntimeOutput):
            stop = RuntimeOutput.stop(f"runtime returned {describe(output)}, not a RuntimeOutput", tick, sim_time)
            stop.extras["stop_kind"] = "invalid_output"
            return stop
        for name, min_rows in (("path", 1), ("waypoints", 2)):
            arr = np.asarray(getattr(output, name))
            if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < min_rows or not np.all(np.isfinite(arr)):
                stop = RuntimeOutput.stop(
                    f"invalid runtime {name}: {describe(arr)} (need finite (N>={min_rows}, 2))", tick, sim_time
                )
                stop.extras["stop_kind"] = "invalid_output"
                return stop
        return output

    # ------------------------------------------------------------------ outputs

    def _metric_info(self, sensors: SensorFrame, position: np.ndarray, yaw: float) -> dict:
        if self.metric_info_fn is not None:
            return self.metric_info_fn()
        base = getattr(super(), "get_metric_info", None)  # Bench2Drive's base class reads the CARLA hero actor
        if base is not None and getattr(self, "hero_actor", None) is not None:
            return base()
        return estimate_metric_info(position, float(sensors.gps[2]), yaw, sensors.imu)

    def _emit(self, record: TickRecord, context: TickContext | None) -> None:
        """Hand the tick to the recorder and Bench2Drive writer; their failures never stop driving."""
        self.last_record = record
        if self.recorder is not None:
            try:
                self.recorder.record(record)
            except Exception:
                if self.config.strict:
                    raise
                log.exception("recorder failed at tick %d; recording disabled for this route", record.frame)
                recorder, self.recorder = self.recorder, None
                try:
                    recorder.close()
                except Exception:
                    log.debug("closing the failed recorder also failed", exc_info=True)
        if self.b2d is not None:
            try:
                data = record.to_json()
                meta = {
                    "step": record.frame,
                    "steer": record.steer,
                    "throttle": record.throttle,
                    "brake": record.brake,
                    "speed": data["speed"],
                    "command": context.command if context else None,
                    "control_mode": record.control_mode,
                    "decision": record.decision,
                    "reasoning": record.reasoning,
                    "snapshot_version": record.snapshot_version,
                    "snapshot_age_ticks": record.age_ticks,
                    "snapshot_age_s": data["snapshot"]["age_s"],
                    "fast_step_ms": data["fast_step_ms"],
                    "safe_stop": record.safe_stop,
                    "safe_stop_reason": record.safe_stop_reason,
                    "refresh_overrun": record.refresh_overrun,
                    "input_flags": record.input_flags,
                    "error": record.error,
                }
                metric = self._metric_info(context.sensors, context.position, context.yaw) if context else None
                self.b2d.write_step(record.frame, record.image, meta, metric)
            except Exception:
                if self.config.strict:
                    raise
                self._b2d_failures += 1
                if (
                    self._b2d_failures == 1 or self._b2d_failures % 200 == 0
                ):  # a full disk would otherwise flood the log
                    log.exception(
                        "Bench2Drive output failed at tick %d (%d failures)", record.frame, self._b2d_failures
                    )
