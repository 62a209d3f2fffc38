"""Debug rendering of one tick: the camera image with the projected plan and text, plus a bird's-eye panel.

Images are RGB uint8. Ego frame: x forward, y right, ground plane z = 0.
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING

import cv2
import numpy as np

from automot.agent.rigs import SensorSpec, camera_extrinsics, camera_intrinsics, project_ego_points

if TYPE_CHECKING:
    from automot.agent.recorder import TickRecord

PATH_RGB = (40, 220, 40)
WAYPOINT_RGB = (255, 170, 0)
TARGET_RGB = (255, 40, 40)
NEXT_TARGET_RGB = (230, 60, 230)
TEXT_RGB = (255, 255, 255)
ALERT_RGB = (255, 80, 80)
ACTOR_RGB = (0, 200, 255)  # other vehicles (world.jsonl), box + id + velocity arrow (1 s of travel)
STATIC_RGB = (170, 170, 120)  # static objects
CONTACT_RGB = (255, 0, 0)  # an actor touching the ego this tick
LANE_RGB = (90, 90, 90)  # lane centre lines near the ego
ROUTE_RGB = (60, 110, 255)  # the planned route
EGO_RGB = (180, 180, 180)
LEGEND = (
    ("ego", EGO_RGB),
    ("path", PATH_RGB),
    ("waypoints", WAYPOINT_RGB),
    ("target pt / next", TARGET_RGB),
    ("vehicle id, 1 s arrow", ACTOR_RGB),
    ("static object", STATIC_RGB),
    ("touching ego", CONTACT_RGB),
    ("lane centre", LANE_RGB),
    ("route", ROUTE_RGB),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def round_up(value: float, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= value (H.264 with yuv420p needs even, ideally x16, sizes)."""
    return max(multiple, int(math.ceil(value / multiple)) * multiple)


def _to_pixels(uv: np.ndarray) -> np.ndarray:
    # Points just in front of the camera project very far out; clip so int32 drawing cannot overflow.
    return np.round(np.clip(uv, -1e4, 1e4)).astype(np.int32)


def _polyline_segments(uv: np.ndarray, valid: np.ndarray) -> list[np.ndarray]:
    """Split a projected polyline at invalid (behind-camera) points."""
    segments, current = [], []
    for point, ok in zip(uv, valid):
        if ok:
            current.append(point)
        elif current:
            segments.append(np.array(current))
            current = []
    if current:
        segments.append(np.array(current))
    return segments


def draw_plan_on_camera(
    image: np.ndarray,
    camera: SensorSpec,
    path: np.ndarray | None,
    waypoints: np.ndarray | None,
    target_points: np.ndarray | None,
) -> None:
    """Project path (polyline), waypoints (dots) and target points (rings) onto ``image`` in place.

    ``image`` may be a resized copy of the camera frame: the intrinsics are scaled to its size.
    """
    height, width = image.shape[:2]
    intrinsics = camera_intrinsics(camera)
    intrinsics = np.diag([width / camera.width, height / camera.height, 1.0]) @ intrinsics
    extrinsics = camera_extrinsics(camera)
    thickness = max(1, round(height / 256))
    if path is not None and len(path):
        pts = np.vstack([np.zeros((1, 2)), np.asarray(path, dtype=np.float64).reshape(-1, 2)])
        uv, valid = project_ego_points(pts, intrinsics, extrinsics)
        for seg in _polyline_segments(_to_pixels(np.nan_to_num(uv)), valid):
            cv2.polylines(image, [seg.reshape(-1, 1, 2)], False, PATH_RGB, thickness + 1, cv2.LINE_AA)
    if waypoints is not None and len(waypoints):
        uv, valid = project_ego_points(np.asarray(waypoints, dtype=np.float64).reshape(-1, 2), intrinsics, extrinsics)
        for u, v in _to_pixels(uv[valid]):
            cv2.circle(image, (int(u), int(v)), thickness + 3, WAYPOINT_RGB, -1, cv2.LINE_AA)
    if target_points is not None:
        uv, valid = project_ego_points(
            np.asarray(target_points, dtype=np.float64).reshape(-1, 2), intrinsics, extrinsics
        )
        for i, ((u, v), ok) in enumerate(zip(_to_pixels(np.nan_to_num(uv)), valid)):
            if ok:
                color = TARGET_RGB if i == 0 else NEXT_TARGET_RGB
                cv2.circle(image, (int(u), int(v)), thickness + 6, color, thickness + 1, cv2.LINE_AA)


def _text_lines(record: TickRecord, max_chars: int) -> list[tuple[str, tuple[int, int, int]]]:
    lines = [
        (
            f"tick {record.frame}  t={record.sim_time:.2f}s  speed {record.speed:.2f} m/s ({record.speed * 3.6:.1f} km/h)",
            TEXT_RGB,
        ),
        (
            f"steer {record.steer:+.3f}  throttle {record.throttle:.2f}  brake {record.brake:.2f}  [{record.control_mode}]",
            TEXT_RGB,
        ),
    ]
    if record.warmup:
        lines.append(("warm-up: buffers filling, model not run", TEXT_RGB))
    if record.fast_step_ms is not None:
        age = (
            f"{record.age_ticks} ticks / {record.age_s:.2f} s"
            if record.age_ticks is not None and record.age_ticks >= 0
            else "none"
        )
        lines.append(
            (f"fast step {record.fast_step_ms:.1f} ms  snapshot v{record.snapshot_version} age {age}", TEXT_RGB)
        )
    if record.decision:
        lines.append((f"decision: {record.decision}", TEXT_RGB))
    if record.reasoning:
        wrapped = textwrap.wrap(f"reasoning: {record.reasoning}", max_chars)
        lines += [(w, TEXT_RGB) for w in wrapped[:3]]
    if record.safe_stop:
        lines.append((f"SAFE STOP: {record.safe_stop_reason or 'unspecified'}", ALERT_RGB))
    if record.error:
        lines.append((f"ERROR: {record.error}"[:max_chars], ALERT_RGB))
    return lines


def draw_text_block(image: np.ndarray, record: TickRecord) -> None:
    """Write the tick's numbers in the top-left corner on a dark band, in place."""
    height, width = image.shape[:2]
    scale = max(0.35, height / 1100)
    line_h = int(26 * scale / 0.6)
    char_w = 11 * scale / 0.6
    lines = _text_lines(record, max(20, int((width - 12) / char_w)))
    band = image[: line_h * len(lines) + 8]
    band[:] = (band * 0.45).astype(np.uint8)  # darken instead of a solid box so the road stays visible
    for i, (text, color) in enumerate(lines):
        cv2.putText(image, text, (6, line_h * (i + 1)), _FONT, scale, color, 1, cv2.LINE_AA)


def draw_bev_panel(record: TickRecord, height: int, width: int, range_m: float) -> np.ndarray:
    """Top-down ego-frame plot (x forward = up, y right = right) of path, waypoints and target points."""
    panel = np.full((height, width, 3), 24, np.uint8)
    if width == 0:
        return panel
    margin = 12
    ppm = (height - 2 * margin) / range_m
    origin = np.array([width / 2.0, height - margin - 5 * ppm])  # ego 5 m above the bottom edge

    def to_px(points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        px = np.stack([origin[0] + pts[:, 1] * ppm, origin[1] - pts[:, 0] * ppm], axis=1)
        return _to_pixels(px)

    for metres in range(-10, int(range_m) + 1, 10):  # grid every 10 m
        row = int(origin[1] - metres * ppm)
        cv2.line(panel, (0, row), (width, row), (55, 55, 55), 1)
        cv2.putText(panel, f"{metres}m", (2, row - 2), _FONT, 0.3, (110, 110, 110), 1, cv2.LINE_AA)
    if record.world is not None:
        _draw_world(panel, record.world, record.world_map, to_px)
    ego = to_px(np.array([[2.4, -1.0], [2.4, 1.0], [-2.4, 1.0], [-2.4, -1.0]]))
    cv2.fillPoly(panel, [ego.reshape(-1, 1, 2)], EGO_RGB)
    if record.path is not None and len(record.path):
        pts = to_px(np.vstack([np.zeros((1, 2)), record.path]))
        cv2.polylines(panel, [pts.reshape(-1, 1, 2)], False, PATH_RGB, 2, cv2.LINE_AA)
    if record.waypoints is not None:
        for u, v in to_px(record.waypoints):
            cv2.circle(panel, (int(u), int(v)), 3, WAYPOINT_RGB, -1, cv2.LINE_AA)
    if record.target_points is not None:
        for i, (u, v) in enumerate(to_px(record.target_points)):
            # Target points can be 50 m away: pin them to the border so their direction stays visible.
            u, v = int(np.clip(u, 4, width - 5)), int(np.clip(v, 4, height - 5))
            cv2.circle(panel, (u, v), 6, TARGET_RGB if i == 0 else NEXT_TARGET_RGB, 2, cv2.LINE_AA)
    cv2.putText(panel, "BEV", (width - 34, 14), _FONT, 0.4, TEXT_RGB, 1, cv2.LINE_AA)
    _draw_legend(panel, with_world=record.world is not None)
    return panel


def _world_to_ego(points: np.ndarray, ego: dict) -> np.ndarray:
    """World points (N, 2) to the ego frame of the snapshot's ground-truth ego (x forward, y right)."""
    c, s = math.cos(ego["yaw"]), math.sin(ego["yaw"])
    d = np.asarray(points, dtype=np.float64).reshape(-1, 2) - [ego["x"], ego["y"]]
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def _draw_world(panel: np.ndarray, world: dict, world_map: dict | None, to_px) -> None:
    """Lanes, route and other actors of a world.jsonl tick (agent/world_record.py) under the plan, in place."""
    ego = world.get("ego") or {}
    if not ego:
        return
    lanes = [(world_map or {}).get("lanes", {}).get(k) for k in world.get("lanes") or []]
    for line in [*lanes, *(world.get("lane_lines") or [])]:
        if line:
            pts = to_px(_world_to_ego(np.asarray(line), ego))
            cv2.polylines(panel, [pts.reshape(-1, 1, 2)], False, LANE_RGB, 1, cv2.LINE_AA)
    route = (world_map or {}).get("route")
    if route:
        pts = to_px(_world_to_ego(np.asarray(route), ego))
        cv2.polylines(panel, [pts.reshape(-1, 1, 2)], False, ROUTE_RGB, 1, cv2.LINE_AA)
    touching = set(world.get("contacts") or [])
    for actor in world.get("actors") or []:
        rx, ry = actor["rel"][0], actor["rel"][1]
        dyaw = actor["yaw"] - ego["yaw"]
        c, s = math.cos(dyaw), math.sin(dyaw)
        half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [actor["length"] / 2, actor["width"] / 2]
        corners = half @ np.array([[c, s], [-s, c]]) + [rx, ry]
        color = CONTACT_RGB if actor["id"] in touching else (
            ACTOR_RGB if str(actor["type"]).startswith(("vehicle.", "walker.")) else STATIC_RGB
        )  # fmt: skip
        pts = to_px(corners)
        cv2.polylines(panel, [pts.reshape(-1, 1, 2)], True, color, 2, cv2.LINE_AA)
        centre = to_px(np.array([[rx, ry]]))[0]
        speed = float(actor.get("speed") or 0.0)
        if speed > 0.1:
            tip = to_px(np.array([[rx + speed * c, ry + speed * s]]))[0]
            cv2.arrowedLine(
                panel, tuple(int(v) for v in centre), tuple(int(v) for v in tip), color, 1, cv2.LINE_AA, 0, 0.2
            )
        cv2.putText(
            panel, str(actor["id"]), (int(centre[0]) + 6, int(centre[1]) - 6), _FONT, 0.35, color, 1, cv2.LINE_AA
        )


def _draw_legend(panel: np.ndarray, with_world: bool) -> None:
    """One swatch and label per marker, bottom-left (the world's entries only when the tick has a world record)."""
    items = LEGEND if with_world else LEGEND[:4]
    height = panel.shape[0]
    line_h = 11
    top = height - line_h * len(items) - 4
    for i, (label, color) in enumerate(items):
        y = top + i * line_h + 8
        cv2.rectangle(panel, (4, y - 6), (12, y), color, -1)
        cv2.putText(panel, label, (16, y), _FONT, 0.3, TEXT_RGB, 1, cv2.LINE_AA)


def contact_banner(world: dict | None) -> str | None:
    """The banner line of a tick whose world record has an actor touching the ego (None otherwise)."""
    if not world or not world.get("contacts"):
        return None
    who = {a["id"]: a["type"] for a in world.get("actors") or []}
    names = ", ".join(f"{who.get(i, '?')} id {i}" for i in world["contacts"])
    return f"COLLISION: ego touching {names}"


def draw_banner(image: np.ndarray, text: str) -> None:
    """A red band with ``text`` across the bottom of the camera image, in place."""
    height, width = image.shape[:2]
    band_h = max(14, height // 12)
    image[height - band_h :] = (image[height - band_h :] * 0.3 + np.array(ALERT_RGB) * 0.7).astype(np.uint8)
    scale = max(0.3, band_h / 30)
    cv2.putText(image, text, (4, height - band_h // 4), _FONT, scale, TEXT_RGB, 1, cv2.LINE_AA)


def compose_frame(
    record: TickRecord,
    camera: SensorSpec,
    video_height: int,
    panel_width: int,
    bev_range_m: float,
) -> np.ndarray:
    """Full video frame: annotated camera image (scaled to ``video_height``) next to the bird's-eye panel.

    Width and height are multiples of 16 so H.264/yuv420p encoders take the frame unchanged. A tick without
    an image (input error) gets a black camera area so the video keeps one frame per tick.
    """
    cam_w = round_up(camera.width * video_height / camera.height, 16)
    if record.image is not None:
        image = cv2.resize(record.image, (cam_w, video_height), interpolation=cv2.INTER_AREA)
    else:
        image = np.zeros((video_height, cam_w, 3), np.uint8)
    draw_plan_on_camera(image, camera, record.path, record.waypoints, record.target_points)
    draw_text_block(image, record)
    banner = record.banner or contact_banner(record.world)
    if banner:
        draw_banner(image, banner)
    if panel_width <= 0:
        return image
    panel = draw_bev_panel(record, video_height, round_up(panel_width, 16), bev_range_m)
    return np.ascontiguousarray(np.hstack([image, panel]))
