"""The CARLA leaderboard agent contract, usable with or without CARLA installed.

Everything a driver of the agent (the CARLA leaderboard, Bench2Drive, or the embedded highway-env world) needs
besides the agent class itself lives here:

* ``AutonomousAgent`` and ``Track``: re-exported from ``leaderboard.autoagents.autonomous_agent`` when that
  package imports; otherwise a local base class with the same contract (see docs/leaderboard-agent-interface.md §1-2):
  ``__init__(carla_host, carla_port, debug=False)``, ``setup(path_to_conf_file)``, ``sensors()``,
  ``run_step(input_data, timestamp)``, ``destroy()``, ``set_global_plan(global_plan_gps, global_plan_world_coord)``.
* ``VehicleControl``: ``carla.VehicleControl`` when ``import carla`` works, else a dataclass with the same fields.
* ``Location``, ``Rotation``, ``Transform``: ``carla`` classes or light stand-ins (metres / degrees, CARLA axes:
  x forward, y right, z up; yaw clockwise seen from above).
* ``RoadOption``: CARLA's navigation enum (VOID -1 ... CHANGELANERIGHT 6).
* ``downsample_route``: the leaderboard's route downsampling, used by the local ``set_global_plan``.

A world driving the agent without CARLA does, per route::

    agent = AgentClass(host, port, debug)          # class name from get_entry_point()
    agent.set_global_plan(gps_plan, world_plan)    # [({'lat','lon','z'}, RoadOption)], [(Transform, RoadOption)]
    agent.setup(config_path)
    specs = agent.sensors()                        # list of sensor dicts (ids, poses, image sizes)
    control = agent.run_step(input_data, sim_time) # every 0.05 s; input_data = {id: (frame, payload)}
    agent.destroy()
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

try:  # the real simulator client, when installed
    import carla as _carla  # type: ignore[import-not-found]
except ImportError:  # CPU dev machines, CI and the embedded world
    _carla = None

try:  # the real leaderboard base class, when the leaderboard is on PYTHONPATH
    from leaderboard.autoagents.autonomous_agent import (  # type: ignore[import-not-found]
        AutonomousAgent as _LeaderboardAgent,
    )
    from leaderboard.autoagents.autonomous_agent import Track as _LeaderboardTrack  # type: ignore[import-not-found]
except ImportError:
    _LeaderboardAgent = None
    _LeaderboardTrack = None

try:  # CARLA's own enum (PythonAPI/carla/agents); the leaderboard's plans carry its members
    from agents.navigation.local_planner import RoadOption as _CarlaRoadOption  # type: ignore[import-not-found]
except ImportError:
    _CarlaRoadOption = None

HAS_CARLA = _carla is not None
HAS_LEADERBOARD = _LeaderboardAgent is not None

# Upstream leaderboard downsamples plans to 200 m, Bench2Drive to 50 m (docs/leaderboard-agent-interface.md §5).
BENCH2DRIVE_ROUTE_SAMPLE_M = 50.0


class _LocalRoadOption(enum.IntEnum):
    """Topological command of a route point (values as in CARLA's ``agents.navigation.local_planner``)."""

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6


RoadOption = _CarlaRoadOption if _CarlaRoadOption is not None else _LocalRoadOption


def road_option_value(option: Any) -> int:
    """Integer value of a RoadOption from either enum (or a plain int)."""
    return int(getattr(option, "value", option))


class _LocalTrack(str, enum.Enum):
    """Leaderboard track; values equal the names (the evaluator compares ``Track(args.track)``)."""

    SENSORS = "SENSORS"
    MAP = "MAP"
    SENSORS_QUALIFIER = "SENSORS_QUALIFIER"
    MAP_QUALIFIER = "MAP_QUALIFIER"


Track = _LeaderboardTrack if _LeaderboardTrack is not None else _LocalTrack


@dataclass
class _LocalVehicleControl:
    """Same fields and defaults as ``carla.VehicleControl``."""

    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False
    manual_gear_shift: bool = False
    gear: int = 0


@dataclass
class _LocalLocation:
    """A point in metres (CARLA axes: x forward/east, y right/south, z up)."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0

    def distance(self, other: _LocalLocation) -> float:
        """Euclidean distance in metres, like ``carla.Location.distance``."""
        return math.sqrt((self.x - other.x) ** 2 + (self.y - other.y) ** 2 + (self.z - other.z) ** 2)


@dataclass
class _LocalRotation:
    """Orientation in degrees (CARLA order of constructor arguments: pitch, yaw, roll)."""

    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0


@dataclass
class _LocalTransform:
    """Pose = location + rotation, like ``carla.Transform``."""

    location: _LocalLocation = field(default_factory=_LocalLocation)
    rotation: _LocalRotation = field(default_factory=_LocalRotation)


if _carla is not None:
    VehicleControl = _carla.VehicleControl
    Location = _carla.Location
    Rotation = _carla.Rotation
    Transform = _carla.Transform
else:
    VehicleControl = _LocalVehicleControl
    Location = _LocalLocation
    Rotation = _LocalRotation
    Transform = _LocalTransform


def make_control(throttle: float = 0.0, steer: float = 0.0, brake: float = 0.0, hand_brake: bool = False) -> Any:
    """Build a ``VehicleControl`` (carla or stand-in) with values clipped to the simulator's ranges."""
    control = VehicleControl()
    control.throttle = float(min(max(throttle, 0.0), 1.0))
    control.steer = float(min(max(steer, -1.0), 1.0))
    control.brake = float(min(max(brake, 0.0), 1.0))
    control.hand_brake = bool(hand_brake)
    control.manual_gear_shift = False  # the leaderboard forces this too
    return control


def transform_xy(transform: Any) -> tuple[float, float]:
    """World (x, y) of a plan entry: a Transform/Location-like object or an (x, y[, z]) sequence."""
    location = getattr(transform, "location", transform)
    if hasattr(location, "x"):
        return float(location.x), float(location.y)
    if isinstance(transform, Sequence) and len(transform) >= 2:
        return float(transform[0]), float(transform[1])
    raise TypeError(f"cannot read x/y from plan entry of type {type(transform).__name__}")


def _plan_location(transform: Any) -> tuple[float, float, float]:
    """World (x, y, z) of a plan entry (z = 0 when the entry has none)."""
    x, y = transform_xy(transform)
    location = getattr(transform, "location", transform)
    z = getattr(location, "z", None)
    if z is None and isinstance(location, Sequence) and len(location) >= 3:
        z = location[2]
    return x, y, float(z or 0.0)


def downsample_route(route: Sequence[tuple[Any, Any]], sample_factor: float) -> list[int]:
    """Indices of ``route`` [(transform, RoadOption)] kept by the leaderboard's ``downsample_route``.

    Same rule, case by case and in the same order (checked against the real function in
    tests/world/test_leaderboard_known_breakages.py): the first point; every lane-change point; a point whose RoadOption differs from
    the previous one unless the previous one was a lane change; a point reached once the distance accumulated
    since the last kept point exceeds ``sample_factor`` (strictly); the last point. The distance (3-D, like
    ``carla.Location.distance``) accumulates only over points that are not kept, so the step onto a kept point
    is not counted: with 1 m spacing and 50 m the kept ids are 0, 51, 102, ... not 0, 50, 100.
    """
    lane_changes = {5, 6}  # CHANGELANELEFT, CHANGELANERIGHT
    kept: list[int] = []
    prev_option: int | None = None
    dist = 0.0
    last = len(route) - 1
    for i, (transform, option_raw) in enumerate(route):
        option = road_option_value(option_raw)
        if (
            prev_option is None
            or option in lane_changes
            or (option != prev_option and prev_option not in lane_changes)
            or dist > sample_factor
            or i == last
        ):
            kept.append(i)
            dist = 0.0
        else:
            dist += math.dist(_plan_location(transform), _plan_location(route[i - 1][0]))
        prev_option = option
    return kept


class _LocalAutonomousAgent:
    """CARLA-free stand-in for ``leaderboard.autoagents.autonomous_agent.AutonomousAgent``.

    Mirrors the Bench2Drive fork where it matters to agents: plans are downsampled to 50 m and the full plans
    are kept as ``_plan_gps_HACK`` / ``_plan_HACK``. There is no sensor interface and no ``__call__``: the
    driver hands ``input_data`` straight to ``run_step``.
    """

    def __init__(self, carla_host: str, carla_port: int, debug: bool = False) -> None:
        self.track = Track.SENSORS
        self._global_plan: list | None = None
        self._global_plan_world_coord: list | None = None
        self._plan_gps_HACK: list | None = None
        self._plan_HACK: list | None = None
        self.wallclock_t0: float | None = None
        self.hero_actor = None  # B2D finds the 'hero' actor here; there is none without CARLA
        self.carla_host = carla_host
        self.carla_port = carla_port
        self.debug = debug

    def setup(self, path_to_conf_file: str) -> None:
        """Initialise the agent from the ``--agent-config`` string."""

    def sensors(self) -> list[dict]:
        """Sensor specification list (docs/leaderboard-agent-interface.md §3)."""
        return []

    def run_step(self, input_data: dict, timestamp: float) -> Any:
        """One control step; the base agent stands still."""
        return make_control(brake=1.0)

    def destroy(self) -> None:
        """Release resources at the end of a route."""

    @staticmethod
    def get_ros_version() -> int:
        """Only ROS agents override this."""
        return -1

    def set_global_plan(self, global_plan_gps: list, global_plan_world_coord: list) -> None:
        """Store the route, downsampled like Bench2Drive (every 50 m plus option changes and lane changes)."""
        self._plan_gps_HACK = list(global_plan_gps)
        self._plan_HACK = list(global_plan_world_coord)
        ids = downsample_route(global_plan_world_coord, BENCH2DRIVE_ROUTE_SAMPLE_M)
        self._global_plan_world_coord = [(global_plan_world_coord[i][0], global_plan_world_coord[i][1]) for i in ids]
        self._global_plan = [global_plan_gps[i] for i in ids]


AutonomousAgent = _LeaderboardAgent if _LeaderboardAgent is not None else _LocalAutonomousAgent

__all__ = [
    "AutonomousAgent",
    "BENCH2DRIVE_ROUTE_SAMPLE_M",
    "HAS_CARLA",
    "HAS_LEADERBOARD",
    "Location",
    "RoadOption",
    "Rotation",
    "Track",
    "Transform",
    "VehicleControl",
    "downsample_route",
    "make_control",
    "road_option_value",
    "transform_xy",
]
