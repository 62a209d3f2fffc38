"""Typed agent configuration loaded from YAML.

The YAML mirrors ``AgentConfig`` section by section. Loading is strict (``automot.config``): an unknown field,
a wrong type or an out-of-range value produces one ``automot.errors.ConfigError`` listing every problem by its
dotted field path, e.g. ``runtime.mode: expected one of 'async', 'sync', 'blocking', 'pipelined', got 'fast'
(str)``; its ``problems`` attribute holds one message per offending field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from automot import config as typed_config
from automot.agent.control import ControlConfig
from automot.agent.rigs import RIGS
from automot.agent.route_planner import RoutePlannerConfig
from automot.agent.state_estimation import UkfConfig
from automot.config import describe_value
from automot.errors import ConfigError
from automot.runtime.config import InvalidRuntimeConfig, RuntimeConfig

__all__ = [
    "AgentConfig",
    "ConfigError",
    "RuntimeConfig",
    "agent_config_from_dict",
    "config_to_dict",
    "load_agent_config",
    "save_agent_config",
]


@dataclass
class ModelConfig:
    """Which network to build (see agent/runtime_factory.py)."""

    preset: str = "tiny"  # model preset name (tiny/demo for CPU, full-size for the released checkpoint)
    checkpoint: str | None = None  # weights path; None = random init of the preset (demo only)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cache: bool = True  # keep the loaded model for the next route (the leaderboard re-creates the agent per route)
    refiner: bool = False  # apply the checkpoint's trajectory refiner (model/refiner.py); needs a checkpoint
    # Released folder only: read ema.safetensors (the original's USE_EMA_WEIGHTS=1). Missing file = error here;
    # the original silently fell back to model.safetensors.
    ema: bool = False
    # Decision text from the meta-action vocabulary (model/decision_vocab.py): None = on for our checkpoints and
    # presets, off for the released / converted AutoMoT checkpoint (its original decoding, parity first).
    decision_vocabulary: bool | None = None


@dataclass
class HistoryConfig:
    """Camera history fed to the slow path (docs/released-agent.md §5)."""

    buffer_len: int = 40
    offsets: list[int] = field(default_factory=lambda: [15, 10, 5, 0])  # ticks before now; any order


@dataclass
class GnssConfig:
    """Georeference for GNSS -> metres. Both refs set: fixed; else solved from the plan, else 42.0 / 2.0."""

    lat_ref: float | None = None
    lon_ref: float | None = None
    solve_from_plan: bool = True
    # A fix farther from the last accepted one than max_speed * elapsed + jump_noise_m (10 m in one 20 Hz tick with
    # the defaults) is a jump no vehicle can make: it is ignored (estimate kept, tick flagged); jump_confirm_ticks
    # consecutive fixes that agree with each other re-anchor the position (agent/gnss_gate.py). null: no check.
    max_speed: float | None = 100.0
    jump_noise_m: float = 5.0
    jump_confirm_ticks: int = 3
    # After this many consecutive ticks without a usable fix (ignored jumps, NaN/complex values) the estimate is no
    # longer trusted: the tick fails and brakes.
    max_ignored_ticks: int = 20


@dataclass
class RecorderConfig:
    """Per-route debug outputs: ``video.mp4`` and ``ticks.jsonl`` (see agent/recorder.py)."""

    video: bool = False
    ticks_jsonl: bool = True
    out_dir: str | None = None  # None: $SAVE_PATH if set, else ./runs/agent; a per-route folder goes below
    fps: float = 20.0  # simulated ticks per second, so the video plays in real time
    video_height: int = 512  # camera image scaled to this height (multiple of 16 for H.264)
    panel_width: int = 256  # bird's-eye panel to the right of the camera image
    bev_range_m: float = 40.0  # metres ahead shown in the bird's-eye panel
    # Frames waiting for the video writer thread; when it is full the tick's frame is dropped (counted in
    # summary.jsonl) instead of the tick waiting for the encoder.
    video_queue: int = 32
    # world.jsonl: the actors and lanes around the ego per tick, for debugging only (agent/world_record.py); never
    # given to the model. Needs the recorder (video or ticks_jsonl on); the video's bird's-eye panel draws it.
    world_jsonl: bool = True
    world_radius_m: float = 60.0


@dataclass
class Bench2DriveConfig:
    """Bench2Drive's per-route files under $SAVE_PATH/<save_name>/ (docs/leaderboard-agent-interface.md §9)."""

    enabled: bool = True  # only takes effect when SAVE_PATH is set
    rgb_front: bool = True
    metric_info_every: int = 1  # rewrite metric_info.json every N ticks (and always at the end)


@dataclass
class AgentConfig:
    """Root of the agent YAML."""

    model: ModelConfig = field(default_factory=ModelConfig)
    # How the dual-rate runtime schedules the slow and fast paths: the runtime's own config (runtime/config.py,
    # runtime/README.md "Modes"), every field settable here.
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    rig: str = "automot-front"
    image_size: tuple[int, int] | None = None  # (width, height) override for every camera of the rig
    history: HistoryConfig = field(default_factory=HistoryConfig)
    route: RoutePlannerConfig = field(default_factory=RoutePlannerConfig)
    gnss: GnssConfig = field(default_factory=GnssConfig)
    # Pose used by the route planner, target points, recorder and metric info: raw GNSS/compass, or the
    # released agent's UKF (agent/state_estimation.py; needs filterpy).
    state_estimator: Literal["gnss", "ukf"] = "gnss"
    # A NaN IMU compass is replaced by the last valid one ("last_valid": no heading jump), or by 0 = north as the
    # released agent does ("zero", mot_b2d_agent.py tick()), which with the UKF snaps the heading for that tick.
    compass_nan: Literal["last_valid", "zero"] = "last_valid"
    ukf: UkfConfig = field(default_factory=UkfConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    bench2drive: Bench2DriveConfig = field(default_factory=Bench2DriveConfig)
    strict: bool = False  # True: run_step re-raises instead of braking (debugging only)
    # Record what the runtime is given each tick into <recorder folder>/inputs/ for `automot replay`
    # (agent/input_recorder.py); `automot drive --record-inputs` turns it on too.
    record_inputs: bool = False


def _check_ranges(cfg: AgentConfig) -> list[str]:
    """Value checks the type system cannot express."""
    problems = []

    def need(ok: bool, path: str, rule: str, value: Any) -> None:
        if not ok:
            problems.append(f"{path}: must be {rule}, got {describe_value(value)}")

    need(cfg.rig in RIGS, "rig", "one of " + ", ".join(repr(r) for r in RIGS), cfg.rig)
    if cfg.image_size is not None:
        need(min(cfg.image_size) > 0, "image_size", "positive (width, height)", cfg.image_size)
    need(cfg.recorder.video_queue >= 1, "recorder.video_queue", ">= 1", cfg.recorder.video_queue)
    need(cfg.gnss.max_speed is None or cfg.gnss.max_speed > 0, "gnss.max_speed", "> 0 or null", cfg.gnss.max_speed)
    need(cfg.gnss.jump_noise_m >= 0, "gnss.jump_noise_m", ">= 0", cfg.gnss.jump_noise_m)
    need(cfg.gnss.jump_confirm_ticks >= 1, "gnss.jump_confirm_ticks", ">= 1", cfg.gnss.jump_confirm_ticks)
    need(cfg.gnss.max_ignored_ticks >= 0, "gnss.max_ignored_ticks", ">= 0", cfg.gnss.max_ignored_ticks)
    need(cfg.history.buffer_len >= 1, "history.buffer_len", ">= 1", cfg.history.buffer_len)
    need(len(cfg.history.offsets) > 0, "history.offsets", "non-empty", cfg.history.offsets)
    for i, off in enumerate(cfg.history.offsets):
        need(0 <= off < cfg.history.buffer_len, f"history.offsets[{i}]", f"in [0, {cfg.history.buffer_len})", off)
    need(cfg.route.min_distance > 0, "route.min_distance", "> 0", cfg.route.min_distance)
    need(
        cfg.route.max_distance >= cfg.route.min_distance,
        "route.max_distance",
        ">= route.min_distance",
        cfg.route.max_distance,
    )
    need(
        (cfg.gnss.lat_ref is None) == (cfg.gnss.lon_ref is None),
        "gnss.lon_ref",
        "set together with gnss.lat_ref",
        cfg.gnss.lon_ref,
    )
    need(cfg.control.lateral.window >= 1, "control.lateral.window", ">= 1", cfg.control.lateral.window)
    need(cfg.control.longitudinal.window >= 1, "control.longitudinal.window", ">= 1", cfg.control.longitudinal.window)
    need(
        cfg.control.lateral.resample_step > 0, "control.lateral.resample_step", "> 0", cfg.control.lateral.resample_step
    )
    need(
        cfg.control.longitudinal.waypoint_dt > 0,
        "control.longitudinal.waypoint_dt",
        "> 0",
        cfg.control.longitudinal.waypoint_dt,
    )
    need(cfg.control.safety.warmup_ticks >= 0, "control.safety.warmup_ticks", ">= 0", cfg.control.safety.warmup_ticks)
    problems += _check_ukf(cfg.ukf) + _check_escape(cfg)
    need(cfg.recorder.fps > 0, "recorder.fps", "> 0", cfg.recorder.fps)
    need(
        cfg.recorder.video_height >= 16 and cfg.recorder.video_height % 16 == 0,
        "recorder.video_height",
        "a positive multiple of 16",
        cfg.recorder.video_height,
    )
    need(cfg.recorder.panel_width >= 0, "recorder.panel_width", ">= 0", cfg.recorder.panel_width)
    need(cfg.recorder.bev_range_m > 0, "recorder.bev_range_m", "> 0", cfg.recorder.bev_range_m)
    need(
        cfg.bench2drive.metric_info_every >= 1,
        "bench2drive.metric_info_every",
        ">= 1",
        cfg.bench2drive.metric_info_every,
    )
    return problems


def _check_ukf(ukf: UkfConfig) -> list[str]:
    problems = []
    for name in ("p0", "r", "q"):
        values = getattr(ukf, name)
        if len(values) != 4 or not all(v > 0 for v in values):
            problems.append(
                f"ukf.{name}: must be 4 positive variances [x, y, yaw, speed], got {describe_value(values)}"
            )
    for name in ("dt", "alpha", "rear_wb"):
        if not getattr(ukf, name) > 0:
            problems.append(f"ukf.{name}: must be > 0, got {describe_value(getattr(ukf, name))}")
    if ukf.front_wb + ukf.rear_wb == 0:
        problems.append(f"ukf.front_wb: must not cancel ukf.rear_wb, got {describe_value(ukf.front_wb)}")
    return problems


def _check_escape(cfg: AgentConfig) -> list[str]:
    esc, problems = cfg.control.escape, []
    for name in ("snapshot_every", "window_ticks", "duration_ticks"):
        if getattr(esc, name) < 1:
            problems.append(f"control.escape.{name}: must be >= 1, got {describe_value(getattr(esc, name))}")
    for name in ("cooldown_ticks", "pop_points"):
        if getattr(esc, name) < 0:
            problems.append(f"control.escape.{name}: must be >= 0, got {describe_value(getattr(esc, name))}")
    if esc.keep_points < 2:  # the planner's target point is route[1]
        problems.append(f"control.escape.keep_points: must be >= 2, got {describe_value(esc.keep_points)}")
    for name in ("max_displacement", "end_heading_deg", "end_displacement"):
        if not getattr(esc, name) > 0:
            problems.append(f"control.escape.{name}: must be > 0, got {describe_value(getattr(esc, name))}")
    if not -1.0 <= esc.steer <= 1.0:
        problems.append(f"control.escape.steer: must be in [-1, 1], got {describe_value(esc.steer)}")
    if not 0.0 <= esc.throttle <= 1.0:
        problems.append(f"control.escape.throttle: must be in [0, 1], got {describe_value(esc.throttle)}")
    return problems


def agent_config_from_dict(data: Mapping | None, source: str = "<dict>") -> AgentConfig:
    """Build and validate an AgentConfig from parsed YAML; raises ConfigError listing every problem.

    The ``runtime`` section is built on its own so that the runtime's range checks (``RuntimeConfig.problems``)
    come back as ``runtime.<field>`` lines next to the type errors of the other sections.
    """
    if not isinstance(data, Mapping):  # None: the defaults; anything else is named by the loader
        return _agent_config(data, source)
    data = dict(data)
    problems: list[str] = []
    runtime = _runtime_section(data.pop("runtime", None), problems)
    try:
        cfg = typed_config.from_dict(AgentConfig, data)
    except ConfigError as exc:
        problems += exc.problems
        cfg = None
    if cfg is not None and runtime is not None:
        cfg.runtime = runtime
        problems += _check_ranges(cfg)
    typed_config.raise_problems(source, problems)
    assert cfg is not None
    return cfg


def _agent_config(data: object, source: str) -> AgentConfig:
    cfg = typed_config.from_dict(AgentConfig, data, source=source)
    typed_config.raise_problems(source, _check_ranges(cfg))
    return cfg


def _runtime_section(section: object, problems: list[str]) -> RuntimeConfig | None:
    """``runtime:`` -> RuntimeConfig. Earlier configs put the less common fields under ``runtime.options``; those
    keys are still read (``options: {threads_fast: 1}`` is ``threads_fast: 1``, and wins over a ``threads_fast``
    beside it), typed and checked like the rest."""
    if isinstance(section, Mapping) and "options" in section:
        section = dict(section)
        options = section.pop("options")
        if options is not None and not isinstance(options, Mapping):
            problems.append(f"runtime.options: expected a mapping, got {describe_value(options)}")
            options = {}
        names = {f.name for f in dataclasses.fields(RuntimeConfig)}
        for key, value in (options or {}).items():
            # An options entry wins over the same field beside it: `--set runtime.options.X=...` on a saved config
            # (which has every field flat) must change X.
            if key not in names:
                problems.append(f"runtime.options.{key}: unknown field (known: {', '.join(sorted(names))})")
            else:
                section[key] = value
    try:
        return typed_config.from_dict(RuntimeConfig, section, path="runtime")
    except ConfigError as exc:
        problems += exc.problems
    except InvalidRuntimeConfig as exc:
        problems += [f"runtime.{p}" for p in exc.problems]
    return None


def load_agent_config(path: str | Path | None) -> AgentConfig:
    """Load an agent YAML; ``None`` or an empty string gives the defaults."""
    if path is None or str(path).strip() == "":
        return AgentConfig()
    path = Path(path)
    cfg = agent_config_from_dict(typed_config.read_yaml_mapping(path, "agent config"), str(path))
    ckpt = cfg.model.checkpoint
    if ckpt and not Path(ckpt).is_absolute() and not Path(ckpt).exists():
        # Relative checkpoint paths may be written relative to the config file (works from any directory).
        beside = (path.parent / ckpt).resolve()
        if beside.exists():
            cfg.model.checkpoint = str(beside)
    return cfg


def save_agent_config(cfg: AgentConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (atomically); ``load_agent_config`` reads it back equal."""
    return typed_config.save_yaml(cfg, path)


def config_to_dict(cfg: Any) -> dict:
    """Plain-dict view of a config dataclass (for logging, summaries and the runtime factory)."""
    return typed_config.to_dict(cfg)
