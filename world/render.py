"""Pinhole RGB camera for the embedded world (numpy + OpenCV), producing CARLA's BGRA uint8 frames.

Draw order (painter's algorithm): sky gradient, terrain plane, lane surfaces, lane markings, vehicle shadows, then
vehicles far to near as shaded boxes (a body plus a cabin, back faces culled). Every polygon is convex and is
clipped against the near plane in camera space before projection, so geometry behind the camera never wraps
around into the image. Camera model = CARLA's: mount pose in the ego frame (x fwd, y right, z up, degrees),
horizontal ``fov``, principal point at the image centre, image u right / v down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from automot.world.geometry import carla_matrix, rigid_inverse
from automot.world.scene import StaticScene

NEAR = 0.15  # m
SHIFT = 2  # sub-pixel bits for cv2.fillConvexPoly
SKY_TOP, SKY_HORIZON = (225, 170, 110), (245, 225, 205)  # BGR
TERRAIN = (78, 112, 96)
ROAD = (80, 80, 82)
MARKING = (225, 225, 225)
SHADOW = (38, 38, 40)
LIGHT = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])  # world frame, from above


@dataclass(frozen=True)
class CameraSpec:
    """One RGB camera as given by ``sensors()``."""

    width: int
    height: int
    fov: float
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    @staticmethod
    def from_sensor(spec: dict) -> CameraSpec:
        """From a leaderboard sensor dict (CARLA's defaults 800 x 600, fov 90 when keys are missing)."""
        return CameraSpec(
            width=int(spec.get("width", 800)),
            height=int(spec.get("height", 600)),
            fov=float(spec.get("fov", 90.0)),
            **{k: float(spec.get(k, 0.0)) for k in ("x", "y", "z", "roll", "pitch", "yaw")},
        )

    @property
    def focal(self) -> float:
        return self.width / (2.0 * math.tan(math.radians(self.fov) / 2.0))


@dataclass(frozen=True)
class Box:
    """A vehicle or obstacle to draw: footprint centre (x, y), yaw (rad), size (m) and BGR colour."""

    x: float
    y: float
    yaw: float
    length: float
    width: float
    height: float
    color: tuple[int, int, int]
    cabin: bool = True


# Unit box corners (x, y, z in [-.5, .5] x [-.5, .5] x [0, 1]) and faces with outward normals (box frame).
_CORNERS = np.array(
    [
        [0.5, -0.5, 0],
        [0.5, 0.5, 0],
        [-0.5, 0.5, 0],
        [-0.5, -0.5, 0],
        [0.5, -0.5, 1],
        [0.5, 0.5, 1],
        [-0.5, 0.5, 1],
        [-0.5, -0.5, 1],
    ]
)
_FACES = [
    ([4, 5, 6, 7], (0, 0, 1)),
    ([0, 1, 5, 4], (1, 0, 0)),
    ([2, 3, 7, 6], (-1, 0, 0)),
    ([1, 2, 6, 5], (0, 1, 0)),
    ([3, 0, 4, 7], (0, -1, 0)),
]


class CameraRenderer:
    """Renders one camera of the ego; build once per sensor and call ``render`` every tick."""

    def __init__(self, spec: CameraSpec, scene: StaticScene, max_distance: float = 250.0) -> None:
        self.spec = spec
        self.scene = scene
        self.max_distance = max_distance
        self.f = spec.focal
        self.cx, self.cy = spec.width / 2.0, spec.height / 2.0
        self.mount = carla_matrix(spec.x, spec.y, spec.z, spec.roll, spec.pitch, spec.yaw)
        rows = np.linspace(0.0, 1.0, spec.height)[:, None]
        grad = (1 - rows) * np.array(SKY_TOP) + rows * np.array(SKY_HORIZON)
        self._sky = np.empty((spec.height, spec.width, 4), np.uint8)
        self._sky[..., :3] = grad[:, None, :].astype(np.uint8)
        self._sky[..., 3] = 255

    def render(self, ego_pose: tuple[float, float, float], boxes: Sequence[Box] = ()) -> np.ndarray:
        """BGRA uint8 (H, W, 4) image for the ego at (x, y, yaw rad) in the world frame."""
        x, y, yaw = ego_pose
        cam_to_world = carla_matrix(x, y, 0.0, 0.0, 0.0, math.degrees(yaw)) @ self.mount
        w2c = rigid_inverse(cam_to_world)
        self._rot, self._trans = w2c[:3, :3], w2c[:3, 3]
        cam_xy = cam_to_world[:2, 3]
        img = self._sky.copy()
        r = 3000.0  # terrain reaches the visual horizon (sub-pixel gap at this range)
        terrain = np.array([[cam_xy[0] + dx, cam_xy[1] + dy, 0.0] for dx, dy in ((r, r), (r, -r), (-r, -r), (-r, r))])
        self._fill(img, self._to_cam(terrain[None]), [TERRAIN])
        for quads, color in ((self.scene.road, ROAD), (self.scene.markings, MARKING)):
            near = quads.near(cam_xy, self.max_distance)
            if len(near):
                self._fill(img, self._to_cam(near), [color] * len(near))
        self._draw_boxes(img, cam_to_world[:3, 3], boxes)
        return img

    # ---- internals --------------------------------------------------------------------------------------------
    def _to_cam(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> camera frame (x fwd, y right, z up)."""
        return pts @ self._rot.T + self._trans

    def _project(self, cam: np.ndarray) -> np.ndarray:
        u = self.cx + self.f * cam[..., 1] / cam[..., 0]
        v = self.cy - self.f * cam[..., 2] / cam[..., 0]
        return np.round(np.stack([u, v], axis=-1) * (1 << SHIFT)).astype(np.int64)

    def _fill(self, img: np.ndarray, polys: np.ndarray, colors: Sequence[tuple[int, ...]]) -> None:
        """Near-clip, cull and fill (M, K, 3) camera-frame convex polygons."""
        front = polys[..., 0] > NEAR
        full = front.all(axis=1)
        w, h = self.spec.width << SHIFT, self.spec.height << SHIFT
        idx = np.nonzero(full)[0]
        if len(idx):
            uv = self._project(polys[idx])
            off = (
                (uv[..., 0] < 0).all(1) | (uv[..., 0] >= w).all(1) | (uv[..., 1] < 0).all(1) | (uv[..., 1] >= h).all(1)
            )
            for k in np.nonzero(~off)[0]:
                self._fill_one(img, uv[k], colors[idx[k]])
        for k in np.nonzero(front.any(axis=1) & ~full)[0]:
            clipped = _clip_near(polys[k])
            if len(clipped) >= 3:
                self._fill_one(img, self._project(clipped), colors[k])

    @staticmethod
    def _fill_one(img: np.ndarray, uv: np.ndarray, color: tuple[int, ...]) -> None:
        # Clamp far outside the image: keeps OpenCV's fixed-point maths in range; shape inside is unchanged
        # only approximately for such extreme vertices, which are always just past the near plane.
        pts = np.clip(uv, -(1 << 28), 1 << 28).astype(np.int32)
        cv2.fillConvexPoly(img, pts, (*color, 255), lineType=cv2.LINE_8, shift=SHIFT)

    def _draw_boxes(self, img: np.ndarray, cam_pos: np.ndarray, boxes: Sequence[Box]) -> None:
        if not boxes:
            return
        near = [b for b in boxes if math.hypot(b.x - cam_pos[0], b.y - cam_pos[1]) < self.max_distance]
        shadows = [_footprint(b, grow=0.15) for b in near]
        if shadows:
            self._fill(img, self._to_cam(np.array(shadows)), [SHADOW] * len(shadows))
        near.sort(key=lambda b: -math.hypot(b.x - cam_pos[0], b.y - cam_pos[1]))
        for box in near:
            for part, shade in _box_parts(box):
                self._draw_solid(img, cam_pos, part, box.yaw, shade)

    def _draw_solid(self, img: np.ndarray, cam_pos: np.ndarray, corners: np.ndarray, yaw: float, color) -> None:
        c, s = math.cos(yaw), math.sin(yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        polys, colors = [], []
        for face, normal in _FACES:
            n = rot @ np.array(normal, dtype=np.float64)
            quad = corners[face]
            if np.dot(n, cam_pos - quad.mean(axis=0)) <= 0.0:  # back face (or camera inside the box)
                continue
            light = 0.55 + 0.45 * max(0.0, float(np.dot(n, LIGHT)))
            polys.append(quad)
            colors.append(tuple(int(min(255, ch * light)) for ch in color))
        if polys:
            self._fill(img, self._to_cam(np.array(polys)), colors)


def _footprint(box: Box, grow: float = 0.0) -> np.ndarray:
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    hl, hw = box.length / 2 + grow, box.width / 2 + grow
    local = np.array([[hl, -hw], [hl, hw], [-hl, hw], [-hl, -hw]])
    xy = local @ np.array([[c, s], [-s, c]]) + np.array([box.x, box.y])
    return np.hstack([xy, np.full((4, 1), 0.02)])


def _box_parts(box: Box) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """World corners (8, 3) of the body and (for vehicles) the darker cabin on top."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    rot = np.array([[c, -s], [s, c]])

    def corners(cx: float, length: float, width: float, z0: float, z1: float) -> np.ndarray:
        local = _CORNERS * np.array([length, width, z1 - z0]) + np.array([cx, 0.0, z0])
        xy = local[:, :2] @ rot.T + np.array([box.x, box.y])
        return np.hstack([xy, local[:, 2:]])

    if not box.cabin:
        return [(corners(0.0, box.length, box.width, 0.0, box.height), box.color)]
    body_top = 0.62 * box.height
    cabin_color = tuple(int(ch * 0.45) for ch in box.color)
    return [
        (corners(0.0, box.length, box.width, 0.25, body_top), box.color),
        (corners(-0.1 * box.length, 0.45 * box.length, 0.88 * box.width, body_top, box.height), cabin_color),
    ]


def _clip_near(poly: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon (K, 3) against the plane x = NEAR."""
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        a_in, b_in = a[0] > NEAR, b[0] > NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (NEAR - a[0]) / (b[0] - a[0])
            out.append(a + t * (b - a))
    return np.array(out)
