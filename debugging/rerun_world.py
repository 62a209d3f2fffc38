"""The world around the ego (``world.jsonl``, agent/world_record.py) in the Rerun export (debugging/rerun_export.py).

Per tick with a world record, on the ego-centred BEV (display u = right, v = -forward, like the export's other
``bev/`` entities) and on the world map (world metres):
  * ``bev/actors`` -- LineStrips2D, one closed box outline per actor, labelled ``<type> <id>`` (red when it
    touches the ego); ``bev/actor_velocity`` -- Arrows2D, 1 s of travel;
  * ``bev/lanes`` and ``bev/route_line`` -- lane centre lines and the planned route near the ego;
  * ``map/actors`` -- the same boxes in world metres; ``world/actors`` -- Boxes3D (centre, half size, yaw about z)
    with ids as labels, for a 3D view.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from automot.agent.overlay import ACTOR_RGB, CONTACT_RGB, LANE_RGB, ROUTE_RGB, STATIC_RGB


def _corners(cx: float, cy: float, yaw: float, length: float, width: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1], [1, 1]]) * [length / 2, width / 2]
    return half @ np.array([[c, s], [-s, c]]) + [cx, cy]


def _to_ego(points: Any, ego: dict) -> np.ndarray:
    c, s = math.cos(ego["yaw"]), math.sin(ego["yaw"])
    d = np.asarray(points, dtype=np.float64).reshape(-1, 2) - [ego["x"], ego["y"]]
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def _bev(points_ego: np.ndarray) -> np.ndarray:
    return np.stack([points_ego[:, 1], -points_ego[:, 0]], axis=1)


def log_world_tick(rec: Any, rr: Any, tick: dict[str, Any], world_map: dict[str, Any] | None) -> int:
    """Log one world.jsonl tick line; returns the number of actors logged."""
    ego = tick.get("ego") or {}
    if not ego:
        return 0
    touching = set(tick.get("contacts") or [])
    bev_boxes, map_boxes, colors, labels, origins, vectors = [], [], [], [], [], []
    centers, half_sizes, angles = [], [], []
    for a in tick.get("actors") or []:
        dyaw = a["yaw"] - ego["yaw"]
        bev_boxes.append(_bev(_corners(a["rel"][0], a["rel"][1], dyaw, a["length"], a["width"])))
        map_boxes.append(_corners(a["x"], a["y"], a["yaw"], a["length"], a["width"]))
        vehicle = str(a["type"]).startswith(("vehicle.", "walker."))
        colors.append(CONTACT_RGB if a["id"] in touching else (ACTOR_RGB if vehicle else STATIC_RGB))
        labels.append(f"{a['type'].split('.')[-1]} {a['id']}")
        speed = float(a.get("speed") or 0.0)
        origins.append(_bev(np.array([[a["rel"][0], a["rel"][1]]]))[0])
        vectors.append(_bev(np.array([[speed * math.cos(dyaw), speed * math.sin(dyaw)]]))[0])
        centers.append([a["x"], a["y"], a.get("height", 1.5) / 2])
        half_sizes.append([a["length"] / 2, a["width"] / 2, a.get("height", 1.5) / 2])
        angles.append(float(a["yaw"]))
    rec.log("bev/actors", rr.LineStrips2D(bev_boxes, colors=colors, labels=labels, radii=0.12))
    rec.log("bev/actor_velocity", rr.Arrows2D(origins=origins, vectors=vectors, colors=colors))
    rec.log("map/actors", rr.LineStrips2D(map_boxes, colors=colors, labels=labels))
    rec.log(
        "world/actors",
        rr.Boxes3D(
            centers=centers,
            half_sizes=half_sizes,
            rotation_axis_angles=[rr.RotationAxisAngle(axis=[0, 0, 1], radians=r) for r in angles],
            colors=colors,
            labels=labels,
        ),
    )
    lanes = [(world_map or {}).get("lanes", {}).get(k) for k in tick.get("lanes") or []]
    lines = [_bev(_to_ego(line, ego)) for line in [*lanes, *(tick.get("lane_lines") or [])] if line]
    if lines:
        rec.log("bev/lanes", rr.LineStrips2D(lines, colors=[LANE_RGB]))
    route = (world_map or {}).get("route")
    if route:
        pts = _to_ego(route, ego)
        near = pts[np.hypot(pts[:, 0], pts[:, 1]) < 80.0]
        if len(near) > 1:
            rec.log("bev/route_line", rr.LineStrips2D([_bev(near)], colors=[ROUTE_RGB]))
    return len(centers)
