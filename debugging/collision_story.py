"""What the car hit and how it came to that, from a run's ``world.jsonl`` (agent/world_record.py) and ticks.

For a collision infraction (``... type=T and id=N at (x=.., y=.., z=..)``) :func:`other_actor_story` returns:
  * ``tick`` / ``sim_time``: the world-log tick whose ground-truth ego position is the message's (the scorer writes
    the ego position of the state it scored, exact to the message's 3 decimals) and the distance found;
  * ``other_actor``: ``id``, ``type``, box, and ``before``: where it was 3 s, 2 s, 1 s before (world and ego-frame
    position, distance, speed; ``null`` while it was outside the recorded radius);
  * ``closing_speed``: the rate at which the centre distance shrank on the tick before contact (m/s, > 0 closing),
    from the recorded relative velocity;
  * ``first_within_30m`` and ``first_seen``: the first tick it was within 30 m of the ego, and the first tick it
    was within 30 m *and* inside the primary camera's horizontal field of view (a box corner in the frustum);
  * ``last_brake``: the last tick at which full braking (brake 1.0, the controller's strongest command, with the
    vehicle model's deceleration ``b_max`` and one tick of actuation delay) still stopped the ego before the spot it
    collided at, with the time-to-collision then (box gap / closing speed).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from automot.agent.world_record import WORLD_NAME, read_world

_WHO = re.compile(r"type=(\S+) and id=(\d+)")
_AT = re.compile(r"x=\s*(-?[\d.]+(?:e-?\d+)?),\s*y=\s*(-?[\d.]+(?:e-?\d+)?)")
NEAR_M = 30.0
DEFAULT_FOV_DEG = 110.0  # the automot-front rig's camera


def find_world_log(folder: Path, ticks_path: Path | None) -> Path | None:
    """world.jsonl beside ticks.jsonl, else in the folder itself."""
    for base in ([ticks_path.parent] if ticks_path is not None else []) + [folder]:
        if (base / WORLD_NAME).is_file():
            return base / WORLD_NAME
    return None


def camera_of(summary: dict[str, Any] | None) -> dict[str, float]:
    """Primary camera mounting (x, y, yaw in the ego frame) and horizontal FOV from the recorded agent config."""
    cfg = (summary or {}).get("config") or {}
    try:
        from automot.agent.rigs import get_rig

        size = cfg.get("image_size")
        rig = get_rig(cfg.get("rig") or "automot-front", tuple(size) if size else None)
        cam = rig.get(rig.primary_camera)
        return {"x": cam.x, "y": cam.y, "yaw": math.radians(cam.yaw), "fov": math.radians(cam.fov or DEFAULT_FOV_DEG)}
    except Exception:  # noqa: BLE001 - an unknown rig: the default front camera
        return {"x": -1.5, "y": 0.0, "yaw": 0.0, "fov": math.radians(DEFAULT_FOV_DEG)}


def _corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
    return half @ np.array([[c, s], [-s, c]]) + [x, y]


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def box_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two convex quadrilaterals that do not overlap (0 when a corner of one is inside the other)."""
    best = math.inf
    for p, q in ((a, b), (b, a)):
        for i in range(4):
            for c in p:
                best = min(best, _seg_dist(c, q[i], q[(i + 1) % 4]))
    return best


def in_view(actor: dict[str, Any], camera: dict[str, float]) -> bool:
    """A corner of the actor's box (ego frame) ahead of the camera and within its horizontal FOV."""
    rx, ry = actor["rel"][0], actor["rel"][1]
    # Relative yaw is not stored; the box orientation barely changes the answer at 30 m, a square of the longer side
    # is used so a car seen broadside is not missed.
    half = max(actor.get("length") or 0.0, actor.get("width") or 0.0) / 2
    for dx, dy in ((half, half), (half, -half), (-half, -half), (-half, half), (0.0, 0.0)):
        fx, fy = rx + dx - camera["x"], ry + dy - camera["y"]
        c, s = math.cos(camera["yaw"]), math.sin(camera["yaw"])
        fwd, right = c * fx + s * fy, -s * fx + c * fy
        if fwd > 0.0 and abs(math.atan2(right, fwd)) <= camera["fov"] / 2:
            return True
    return False


def _find(tick: dict[str, Any], actor_id: int) -> dict[str, Any] | None:
    return next((a for a in tick.get("actors") or [] if a.get("id") == actor_id), None)


def _boxes(tick: dict[str, Any], actor: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    e = tick["ego"]
    ego = _corners(e["x"], e["y"], e["yaw"], e.get("length", 4.9), e.get("width", 2.1))
    return ego, _corners(actor["x"], actor["y"], actor["yaw"], actor["length"], actor["width"])


def closing_speed(actor: dict[str, Any]) -> float | None:
    """Rate at which the centre distance shrinks (m/s, > 0 approaching): minus the relative velocity along the line
    from the ego to the actor, both from the tick's ``rel`` = [x, y, vx, vy] (ego frame)."""
    rx, ry, rvx, rvy = actor["rel"]
    d = math.hypot(rx, ry)
    return None if d < 1e-6 else round(-(rx * rvx + ry * rvy) / d, 3)


def other_actor_story(
    message: str,
    world: dict[int, dict[str, Any]],
    camera: dict[str, float],
    b_max: float,
) -> dict[str, Any] | None:
    """The story of one collision infraction (see the module docstring); None when the message names no actor or
    the world log does not hold the collision."""
    who, at = _WHO.search(message), _AT.search(message)
    if who is None or at is None or not world:
        return None
    actor_id, xy = int(who.group(2)), (float(at.group(1)), float(at.group(2)))
    frames = sorted(world)
    hit, hit_d = None, math.inf
    for f in frames:
        e = world[f].get("ego") or {}
        d = math.hypot(e.get("x", math.inf) - xy[0], e.get("y", math.inf) - xy[1])
        if d < hit_d and _find(world[f], actor_id) is not None:
            hit, hit_d = f, d
    if hit is None:
        return None
    dt = _dt(world, frames)
    rate = round(1.0 / dt) if dt > 0 else 20
    tick = world[hit]
    actor = _find(tick, actor_id)
    story: dict[str, Any] = {
        "id": actor_id,
        "type": who.group(1),
        "length": actor["length"],
        "width": actor["width"],
        "at_contact": {"x": actor["x"], "y": actor["y"], "speed": actor["speed"], "rel": actor["rel"]},
        "before": {},
    }
    for secs in (3, 2, 1):
        past = world.get(hit - secs * rate)
        a = None if past is None else _find(past, actor_id)
        story["before"][f"{secs}s"] = (
            None
            if a is None
            else {
                "tick": hit - secs * rate,
                "x": a["x"],
                "y": a["y"],
                "rel": a["rel"][:2],
                "distance": round(math.hypot(a["rel"][0], a["rel"][1]), 3),
                "speed": a["speed"],
            }
        )
    prev = world.get(hit - 1)
    before_contact = None if prev is None else _find(prev, actor_id)
    story["closing_speed"] = None if before_contact is None else closing_speed(before_contact)
    near = seen = None
    for f in frames:
        if f > hit:
            break
        a = _find(world[f], actor_id)
        if a is None or math.hypot(a["rel"][0], a["rel"][1]) > NEAR_M:
            continue
        if near is None:
            near = {"tick": f, "sim_time": world[f].get("sim_time"), "distance": round(math.hypot(*a["rel"][:2]), 3)}
        if in_view(a, camera):
            seen = {"tick": f, "sim_time": world[f].get("sim_time"), "distance": round(math.hypot(*a["rel"][:2]), 3)}
            break
    story["first_within_30m"], story["first_seen"] = near, seen
    story["last_brake"] = _last_brake(world, frames, hit, actor_id, b_max, dt)
    return {
        "tick": hit,
        "sim_time": tick.get("sim_time"),
        "located_by": f"world log ({hit_d:.3f} m)",
        "other_actor": story,
    }


def _dt(world: dict[int, dict[str, Any]], frames: list[int]) -> float:
    for f0, f1 in zip(frames, frames[1:]):
        t0, t1 = world[f0].get("sim_time"), world[f1].get("sim_time")
        if t0 is not None and t1 is not None and f1 > f0:
            return (t1 - t0) / (f1 - f0)
    return 0.05


def _last_brake(
    world: dict[int, dict[str, Any]], frames: list[int], hit: int, actor_id: int, b_max: float, dt: float
) -> dict[str, Any] | None:
    """Last tick whose full brake stops the ego short of the collision spot (ego path length to it)."""
    path = [f for f in frames if f <= hit]
    xy = np.array([[world[f]["ego"]["x"], world[f]["ego"]["y"]] for f in path])
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1) if len(xy) > 1 else np.zeros(0)
    to_go = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])  # path length from each tick to the spot
    for i in range(len(path) - 1, -1, -1):
        v = float(world[path[i]]["ego"]["speed"])
        stop = v * dt + v * v / (2.0 * b_max)  # one tick before the brake acts, then b_max
        if stop < to_go[i] or (v == 0.0 and to_go[i] > 0.0):
            f = path[i]
            a = _find(world[f], actor_id)
            out = {"tick": f, "sim_time": world[f].get("sim_time"), "speed": round(v, 3),
                   "distance_to_spot": round(float(to_go[i]), 3), "stopping_distance": round(stop, 3),
                   "gap": None, "closing_speed": None, "ttc": None}  # fmt: skip
            if a is not None:
                gap = box_gap(*_boxes(world[f], a))
                closing = closing_speed(a)
                out["gap"] = round(gap, 3)
                out["closing_speed"] = closing
                out["ttc"] = round(gap / closing, 3) if closing and closing > 0 else None
            return out
    return None


def collision_stories(run: Any, b_max: float | None = None) -> dict[str, dict[str, Any]]:
    """message -> story for every collision of ``run`` (a runfiles.Run) its world log can explain."""
    path = find_world_log(Path(run.folder), run.ticks_path)
    if path is None:
        return {}
    _, world = read_world(path)
    if b_max is None:
        from automot.world.dynamics import DEFAULT_PARAMS

        b_max = DEFAULT_PARAMS.b_max
    camera = camera_of(run.summary)
    out = {}
    for kind, items in ((run.record or {}).get("infractions") or {}).items():
        if not kind.startswith("collisions"):
            continue
        for message in items or []:
            story = other_actor_story(str(message), world, camera, b_max)
            if story is not None:
                out[str(message)] = story
    return out
