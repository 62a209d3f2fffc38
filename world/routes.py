"""Named, seedable routes for the embedded world, read from ``leaderboard_configs/routes/*.yaml``.

A route file names a highway-env scenario (``env_id`` + ``env_config`` overrides), the seed, the tick limit, the
georeference used for GNSS, and the ego's route as a list of highway-env lanes ``[from, to, id]`` (see
``leaderboard_configs/routes/README.md`` for the schema). Two consecutive legs on the same road with different lane
ids describe a lane change.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from automot.errors import UsageError

ROAD_OPTIONS = ("VOID", "LEFT", "RIGHT", "STRAIGHT", "LANEFOLLOW", "CHANGELANELEFT", "CHANGELANERIGHT")
_DEFAULT_DIR = Path(__file__).resolve().parents[1] / "leaderboard_configs" / "routes"


class UnknownRouteError(UsageError, KeyError):
    """Raised for a route name that has no YAML file; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class RouteLeg:
    """One highway-env lane of the ego route.

    end_s: stop this many metres along the lane (last leg only; None = lane end).
    option: RoadOption name given to the leg's points (junction turns: LEFT/RIGHT/STRAIGHT).
    change_at / change_length: for a lane change from the previous leg (same road, other lane id), where the
    manoeuvre starts (metres along the road) and how long the lateral blend is.
    """

    lane: tuple[str, str, int]
    end_s: float | None = None
    option: str = "LANEFOLLOW"
    change_at: float | None = None
    change_length: float = 30.0


@dataclass(frozen=True)
class ExtraVehicle:
    """A traffic vehicle added on top of the env's own (scripted start, then IDM/MOBIL like the rest)."""

    lane: tuple[str, str, int]
    s: float
    speed: float
    target_speed: float | None = None
    destination: str | None = None


@dataclass(frozen=True)
class TrafficStream:
    """A spawner: a new IDM vehicle at the start of ``lane`` every ``period_s`` seconds when the spot is free."""

    lane: tuple[str, str, int]
    period_s: float
    speed: float
    speed_jitter: float = 0.0
    destination: str | None = None


@dataclass(frozen=True)
class RouteSpec:
    """Everything needed to build one embedded route."""

    name: str
    env_id: str
    legs: tuple[RouteLeg, ...]
    env_config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    seed: int = 0
    sim_rate_hz: float = 20.0
    tick_limit: int = 2000
    lat_ref: float = 42.0
    lon_ref: float = 2.0
    target_speed: float = 10.0
    start_s: float = 0.0
    start_speed: float = 0.0
    clear_radius: float = 20.0
    spawn_period_s: float = 1.0
    extra_vehicles: tuple[ExtraVehicle, ...] = ()
    streams: tuple[TrafficStream, ...] = ()
    max_length: float | None = None
    source: str = ""

    @property
    def dt(self) -> float:
        """Simulation step in seconds."""
        return 1.0 / self.sim_rate_hz

    def truncated(self, length_m: float) -> RouteSpec:
        """Same route cut to at most ``length_m`` metres of path (used for quick runs and tests)."""
        return dataclasses.replace(self, max_length=float(length_m))


def routes_dir() -> Path:
    """Folder holding the route YAML files (``AUTOMOT_ROUTES_DIR`` overrides the repository default)."""
    return Path(os.environ.get("AUTOMOT_ROUTES_DIR", _DEFAULT_DIR))


def list_routes() -> list[str]:
    """Sorted names of the available routes."""
    folder = routes_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_route(name: str) -> RouteSpec:
    """Load a route by name (or by path to a YAML file) and validate it."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        path = routes_dir() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_routes()) or "(none)"
        raise UnknownRouteError(f"unknown route {name!r}; known routes: {known} (folder {routes_dir()})")
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    try:
        return _parse(raw, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid route file {path}: {exc}") from exc


def _parse(raw: dict[str, Any], path: Path) -> RouteSpec:
    if not isinstance(raw, dict):
        raise TypeError("top level must be a mapping")
    ego = raw.get("ego") or {}
    legs_raw = ego.get("route")
    if not legs_raw:
        raise ValueError("ego.route must list at least one lane")
    legs = tuple(_parse_leg(leg, i) for i, leg in enumerate(legs_raw))
    for prev, leg in zip(legs, legs[1:]):
        same_road = prev.lane[:2] == leg.lane[:2]
        if same_road and prev.lane[2] == leg.lane[2]:
            raise ValueError(f"leg {leg.lane} repeats the previous lane")
        if not same_road and prev.lane[1] != leg.lane[0]:
            raise ValueError(f"leg {leg.lane} does not start where {prev.lane} ends")
        if same_road and leg.change_at is None:
            raise ValueError(f"lane change to {leg.lane} needs change_at")
    geo = raw.get("georeference") or {}
    traffic = raw.get("traffic") or {}
    spec = RouteSpec(
        name=str(raw.get("name", path.stem)),
        description=str(raw.get("description", "")).strip(),
        env_id=str(raw["env_id"]),
        env_config=dict(raw.get("env_config") or {}),
        legs=legs,
        seed=int(raw.get("seed", 0)),
        sim_rate_hz=float(raw.get("sim_rate_hz", 20.0)),
        tick_limit=int(raw.get("tick_limit", 2000)),
        lat_ref=float(geo.get("lat", 42.0)),
        lon_ref=float(geo.get("lon", 2.0)),
        target_speed=float(raw.get("target_speed", 10.0)),
        start_s=float(ego.get("start_s", 0.0)),
        start_speed=float(ego.get("start_speed", 0.0)),
        clear_radius=float(traffic.get("clear_radius", 20.0)),
        spawn_period_s=float(traffic.get("spawn_period_s", 1.0)),
        extra_vehicles=tuple(_parse_extra(v) for v in traffic.get("extra_vehicles") or ()),
        streams=tuple(_parse_stream(v) for v in traffic.get("streams") or ()),
        source=str(path),
    )
    if spec.sim_rate_hz <= 0 or spec.tick_limit <= 0 or spec.target_speed <= 0:
        raise ValueError("sim_rate_hz, tick_limit and target_speed must be positive")
    return spec


def _parse_lane(lane: Any, what: str) -> tuple[str, str, int]:
    if not (isinstance(lane, list | tuple) and len(lane) == 3):
        raise ValueError(f"{what}: lane must be [from, to, id], got {lane!r}")
    return str(lane[0]), str(lane[1]), int(lane[2])


def _parse_extra(raw: dict[str, Any]) -> ExtraVehicle:
    return ExtraVehicle(
        lane=_parse_lane(raw["lane"], "extra vehicle"),
        s=float(raw.get("s", 0.0)),
        speed=float(raw.get("speed", 0.0)),
        target_speed=None if raw.get("target_speed") is None else float(raw["target_speed"]),
        destination=None if raw.get("destination") is None else str(raw["destination"]),
    )


def _parse_stream(raw: dict[str, Any]) -> TrafficStream:
    stream = TrafficStream(
        lane=_parse_lane(raw["lane"], "traffic stream"),
        period_s=float(raw["period_s"]),
        speed=float(raw.get("speed", 10.0)),
        speed_jitter=float(raw.get("speed_jitter", 0.0)),
        destination=None if raw.get("destination") is None else str(raw["destination"]),
    )
    if stream.period_s <= 0:
        raise ValueError("traffic stream period_s must be positive")
    return stream


def _parse_leg(raw: dict[str, Any], index: int) -> RouteLeg:
    lane = _parse_lane(raw["lane"], f"leg {index}")
    option = str(raw.get("option", "LANEFOLLOW")).upper()
    if option not in ROAD_OPTIONS:
        raise ValueError(f"leg {index}: option {option!r} not in {ROAD_OPTIONS}")
    return RouteLeg(
        lane=lane,
        end_s=None if raw.get("end_s") is None else float(raw["end_s"]),
        option=option,
        change_at=None if raw.get("change_at") is None else float(raw["change_at"]),
        change_length=float(raw.get("change_length", 30.0)),
    )
