"""The world around the ego, recorded for debugging only: ``world.jsonl`` beside ``ticks.jsonl``.

Nothing here is ever given to the model or the controllers: the recorder asks a *world source* for a snapshot after
the tick's record is complete and writes it to its own stream, so a run can say afterwards what the car hit, where
that actor came from and when it came into view.

Sources: the embedded world registers one (``world/world_log.py``, ``set_source``) while a route runs; in CARLA,
without a registered source, :class:`CarlaSource` reads ``CarlaDataProvider`` (the hero actor, the actors within the
radius, the lanes near the ego from the map, and the traffic light / stop signs that apply to the ego).

``world.jsonl`` (one JSON object per line, flushed per tick like ticks.jsonl):
  * optional first line ``{"kind": "map", "lanes": {ID: [[x, y], ...]}, "route": [[x, y], ...]}``: static lane
    centre lines and the planned route, world metres (the embedded world writes it; CARLA has no static header);
  * then one line per recorded tick ``{"kind": "tick", "frame", "sim_time", "ego": {x, y, yaw, speed, length,
    width}, "actors": [...], "lanes": [ID, ...] | "lane_lines": [[[x, y], ...], ...], "traffic_light", "stop_sign"}``
    where ``frame`` equals ticks.jsonl's ``frame`` (the world state the agent's sensors saw that tick, before its
    control is applied). Each actor: ``id``, ``type``, ``x``, ``y``, ``yaw`` (rad), ``speed`` (m/s), ``length``,
    ``width``, ``height`` (m), ``rel``: ``[x, y, vx, vy]`` position and velocity relative to the ego in the ego
    frame (x forward, y right, as ticks.jsonl's path), so ``-vx`` is the speed at which it closes in from ahead.
    ``contacts`` (embedded world): ids of the actors whose box overlaps the ego's at this tick.
World coordinates are CARLA's (the embedded world uses the same frame).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

WORLD_NAME = "world.jsonl"
DEFAULT_RADIUS_M = 60.0


class WorldSource(Protocol):
    """Where snapshots come from: ``header()`` once (or None), ``snapshot(radius)`` per tick (or None)."""

    def header(self) -> dict[str, Any] | None: ...

    def snapshot(self, radius: float) -> dict[str, Any] | None: ...


_source: WorldSource | None = None
_no_scenario_runner = False  # srunner failed to import once: not retried every tick


def set_source(source: WorldSource | None) -> None:
    """Register (None: withdraw) the source of the route being run (the embedded runner does this)."""
    global _source
    _source = source


def current_source() -> WorldSource | None:
    """The registered source, else a CARLA one when ``CarlaDataProvider`` has a hero actor, else None."""
    if _source is not None:
        return _source
    return CarlaSource.if_available()


def _r(value: float, nd: int = 3) -> float:
    value = float(value)
    return round(value, nd) if math.isfinite(value) else 0.0


def ego_frame(dx: float, dy: float, yaw: float) -> tuple[float, float]:
    """A world-frame vector in the ego frame of an ego with heading ``yaw``: (forward, right).

    CARLA / highway-env world frames have y pointing right of x when seen from above (left-handed, yaw clockwise),
    so the ego's right is +y rotated by yaw: right = -sin(yaw) dx + cos(yaw) dy.
    """
    c, s = math.cos(yaw), math.sin(yaw)
    return c * dx + s * dy, -s * dx + c * dy


def actor_entry(
    actor_id: int,
    type_id: str,
    x: float,
    y: float,
    yaw: float,
    speed: float,
    size: tuple[float, float, float],
    ego: dict[str, float],
    velocity: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """One actor line of a tick, with its position and velocity relative to ``ego`` (a tick's ``ego`` dict)."""
    vx, vy = velocity if velocity is not None else (speed * math.cos(yaw), speed * math.sin(yaw))
    evx, evy = ego["speed"] * math.cos(ego["yaw"]), ego["speed"] * math.sin(ego["yaw"])
    rx, ry = ego_frame(x - ego["x"], y - ego["y"], ego["yaw"])
    rvx, rvy = ego_frame(vx - evx, vy - evy, ego["yaw"])
    return {
        "id": int(actor_id),
        "type": str(type_id),
        "x": _r(x),
        "y": _r(y),
        "yaw": _r(yaw, 4),
        "speed": _r(speed),
        "length": _r(size[0], 2),
        "width": _r(size[1], 2),
        "height": _r(size[2], 2),
        "rel": [_r(rx), _r(ry), _r(rvx), _r(rvy)],
    }


class WorldLog:
    """Appends snapshots to ``world.jsonl`` (opened on the first record, flushed per line)."""

    def __init__(self, out_dir: str | Path, radius: float = DEFAULT_RADIUS_M) -> None:
        self.path = Path(out_dir) / WORLD_NAME
        self.radius = float(radius)
        self.lines = 0
        self.error: str | None = None
        self.map: dict[str, Any] | None = None  # the header, kept for the video's bird's-eye panel
        self._file = None

    def record(self, frame: int, sim_time: float, source: WorldSource | None = None) -> dict[str, Any] | None:
        """Write this tick's snapshot; returns it (None without a source or after a failure)."""
        source = source if source is not None else current_source()
        if source is None or self.error is not None:
            return None
        try:
            snap = source.snapshot(self.radius)
            if snap is None:
                return None
            if self._file is None:
                self._file = self.path.open("w", encoding="utf-8")
                self.map = source.header()
                if self.map is not None:
                    self._file.write(json.dumps({"kind": "map", **self.map}, allow_nan=False) + "\n")
            line = {"kind": "tick", "frame": int(frame), "sim_time": _r(sim_time, 6), **snap}
            self._file.write(json.dumps(line, allow_nan=False) + "\n")
            self._file.flush()
            self.lines += 1
            return line
        except Exception as exc:  # noqa: BLE001 - debug output: stop recording the world, keep driving
            self.error = f"{type(exc).__name__}: {exc}"
            return None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_world(path: str | Path) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
    """``(map header or None, {frame: tick line})`` of a world.jsonl; a cut last line is skipped."""
    header, ticks = None, {}
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if not isinstance(item, dict):
                continue
            if item.get("kind") == "map":
                header = item
            elif item.get("frame") is not None:
                ticks[int(item["frame"])] = item
    return header, ticks


class CarlaSource:
    """Snapshots from ``CarlaDataProvider`` (srunner): debug-only, read on the agent side like privileged agents do.

    Offline this is tested with a stand-in provider only (tests/agent/test_world_record.py); the lane sampling and
    the traffic-light / stop-sign semantics against a real CARLA server are not tested here.
    """

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    @classmethod
    def if_available(cls) -> CarlaSource | None:
        global _no_scenario_runner
        if _no_scenario_runner:
            return None
        try:
            from srunner.scenariomanager.carla_data_provider import CarlaDataProvider  # pyright: ignore
        except Exception:  # noqa: BLE001 - no scenario runner: not a CARLA run
            _no_scenario_runner = True
            return None
        try:
            if CarlaDataProvider.get_world() is None or cls._hero(CarlaDataProvider) is None:
                return None
        except Exception:  # noqa: BLE001
            return None
        return cls(CarlaDataProvider)

    @staticmethod
    def _hero(provider: Any) -> Any:
        getter = getattr(provider, "get_hero_actor", None)  # newer scenario runners keep the hero; else search
        hero = getter() if getter is not None else None
        if hero is not None:
            return hero
        for actor in provider.get_world().get_actors().filter("vehicle.*"):
            if actor.attributes.get("role_name") in ("hero", "ego_vehicle"):
                return actor
        return None

    def header(self) -> dict[str, Any] | None:
        return None

    def snapshot(self, radius: float) -> dict[str, Any] | None:
        world = self.provider.get_world()
        hero = self._hero(self.provider)
        if hero is None:
            return None
        tf = hero.get_transform()
        v = hero.get_velocity()
        ego_box = hero.bounding_box.extent
        ego = {
            "x": _r(tf.location.x),
            "y": _r(tf.location.y),
            "yaw": _r(math.radians(tf.rotation.yaw), 4),
            "speed": _r(math.hypot(v.x, v.y)),
            "length": _r(2 * ego_box.x, 2),
            "width": _r(2 * ego_box.y, 2),
        }
        actors = []
        for actor in world.get_actors():
            type_id = str(actor.type_id)
            if actor.id == hero.id or not type_id.startswith(("vehicle.", "walker.", "static.prop")):
                continue
            loc = actor.get_transform().location
            if math.hypot(loc.x - ego["x"], loc.y - ego["y"]) > radius:
                continue
            atf, av = actor.get_transform(), actor.get_velocity()
            ext = actor.bounding_box.extent
            actors.append(
                actor_entry(
                    actor.id,
                    type_id,
                    atf.location.x,
                    atf.location.y,
                    math.radians(atf.rotation.yaw),
                    math.hypot(av.x, av.y),
                    (2 * ext.x, 2 * ext.y, 2 * ext.z),
                    ego,
                    (av.x, av.y),
                )  # fmt: skip
            )
        out: dict[str, Any] = {"ego": ego, "actors": actors, "lane_lines": self._lanes(world, tf.location, radius)}
        light = hero.get_traffic_light() if hasattr(hero, "get_traffic_light") else None
        out["traffic_light"] = None if light is None else {"id": light.id, "state": str(light.get_state())}
        out["stop_sign"] = self._stop_sign(world, ego)
        return out

    @staticmethod
    def _lanes(world: Any, location: Any, radius: float, step: float = 2.0) -> list[list[list[float]]]:
        """Centre lines of the ego's lane and its neighbours, ``radius`` ahead and half of it behind."""
        wp = world.get_map().get_waypoint(location)
        lanes, seeds = [], [wp, wp.get_left_lane(), wp.get_right_lane()]
        for seed in seeds:
            if seed is None:
                continue
            back = [seed]
            while len(back) * step < radius / 2 and back[-1].previous(step):
                back.append(back[-1].previous(step)[0])
            ahead = [seed]
            while len(ahead) * step < radius and ahead[-1].next(step):
                ahead.append(ahead[-1].next(step)[0])
            pts = [*reversed(back[1:]), *ahead]
            lanes.append([[_r(p.transform.location.x, 2), _r(p.transform.location.y, 2)] for p in pts])
        return lanes

    @staticmethod
    def _stop_sign(world: Any, ego: dict[str, float], reach: float = 20.0) -> dict[str, Any] | None:
        """The nearest stop sign ahead of the ego within ``reach`` metres (CARLA's own test uses trigger volumes;
        this is a debugging hint, not the criterion)."""
        best = None
        for sign in world.get_actors().filter("traffic.stop"):
            loc = sign.get_transform().location
            fwd, _ = ego_frame(loc.x - ego["x"], loc.y - ego["y"], ego["yaw"])
            dist = math.hypot(loc.x - ego["x"], loc.y - ego["y"])
            if 0.0 < fwd and dist <= reach and (best is None or dist < best["distance"]):
                best = {"id": sign.id, "distance": _r(dist, 2)}
        return best
