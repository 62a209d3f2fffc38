"""CARLA-free sensor preprocessing for the released BEV encoder (numpy + OpenCV), docs/released-agent.md §3.

Camera: JPEG round trip at OpenCV's default quality (95; the encoder was trained on JPEG frames), BGR -> RGB,
crop rows [0, cropped_height) and the centred cropped_width, HWC -> CHW float (values 0..255).
LiDAR: points into the ego frame (sensor yaw + mounting offset), the previous half sweep re-aligned into the
current frame from two ego poses, then a 2-D histogram: z < max_height_lidar, channel "above" z > split height
(plus "below" when use_ground_plane), [min, max] m at pixels_per_meter, counts clipped at hist_max_per_pixel and
divided by it, transposed so rows are y and columns are x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from automot.geometry import wrap_angle
from automot.model.released.bev_config import BEVConfig


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def jpeg_round_trip(bgr: np.ndarray) -> np.ndarray:
    """Encode/decode with OpenCV defaults (quality 95), as the released agent does before the BEV encoder."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr))
    if not ok:
        raise ValueError(f"camera frame could not be JPEG-encoded (shape {bgr.shape}, dtype {bgr.dtype})")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def camera_array(frame_bgr: np.ndarray, cfg: BEVConfig, jpeg: bool = True) -> np.ndarray:
    """CARLA BGR(A) uint8 frame -> float32 (3, cropped_height, cropped_width) RGB in 0..255."""
    frame = np.asarray(frame_bgr)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4) or frame.dtype != np.uint8:
        raise ValueError(f"camera frame: expected uint8 (H, W, 3|4) BGR(A), got {frame.dtype} {frame.shape}")
    bgr = frame[:, :, :3]
    if jpeg:
        bgr = jpeg_round_trip(bgr)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if cfg.crop_image:
        h, w = rgb.shape[:2]
        if cfg.cropped_height > h or cfg.cropped_width > w:
            raise ValueError(f"camera frame {w}x{h} is smaller than the crop {cfg.cropped_width}x{cfg.cropped_height}")
        rows, cols = cfg.image_shape(w, h)
        side = (w - cols) // 2
        rgb = rgb[:rows, side : side + cols]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32)


def lidar_to_ego(points: np.ndarray, cfg: BEVConfig) -> np.ndarray:
    """Sensor-frame points (N, >=3) -> ego frame: rotate by the mounting yaw, add the mounting position."""
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    rot = _yaw_matrix(np.deg2rad(cfg.lidar_rot[2]))
    return (rot @ pts.T).T + np.asarray(cfg.lidar_pos, dtype=np.float64)


def align_lidar(
    points: np.ndarray, pose_prev: tuple[float, float, float], pose_now: tuple[float, float, float]
) -> np.ndarray:
    """Move ego-frame points of the previous tick into the current ego frame (poses: world x, y, yaw)."""
    x0, y0, yaw0 = pose_prev
    x1, y1, yaw1 = pose_now
    delta = _yaw_matrix(yaw1).T @ np.array([x1 - x0, y1 - y0, 0.0])
    rot = _yaw_matrix(wrap_angle(yaw1 - yaw0))  # released normalize_angle arithmetic
    return (rot.T @ (np.asarray(points, dtype=np.float64) - delta).T).T


def lidar_histogram(points: np.ndarray, cfg: BEVConfig) -> np.ndarray:
    """Ego-frame points -> float32 (C, H, W) histogram (C = 2 with ground plane, else 1)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"LiDAR points: expected (N, >=3) x, y, z[, intensity], got shape {pts.shape}")
    pts = pts[:, :3]
    ppm = int(cfg.pixels_per_meter)
    xbins = np.linspace(cfg.min_x, cfg.max_x, int(round((cfg.max_x - cfg.min_x) * ppm)) + 1)
    ybins = np.linspace(cfg.min_y, cfg.max_y, int(round((cfg.max_y - cfg.min_y) * ppm)) + 1)

    def splat(p: np.ndarray) -> np.ndarray:
        hist = np.histogramdd(p[:, :2], bins=(xbins, ybins))[0]
        hist = np.minimum(hist, cfg.hist_max_per_pixel)
        return (hist / cfg.hist_max_per_pixel).T  # rows = y, columns = x

    pts = pts[pts[:, 2] < cfg.max_height_lidar]
    above = splat(pts[pts[:, 2] > cfg.lidar_split_height])
    if cfg.use_ground_plane:
        channels = [splat(pts[pts[:, 2] <= cfg.lidar_split_height]), above]
    else:
        channels = [above]
    return np.stack(channels, axis=0).astype(np.float32)


@dataclass
class LidarAccumulator:
    """Joins each half sweep with the previous one re-aligned by the ego motion (released agent behaviour)."""

    cfg: BEVConfig
    _last_points: np.ndarray | None = None
    _last_pose: tuple[float, float, float] | None = None

    def reset(self) -> None:
        self._last_points, self._last_pose = None, None

    def push(self, sensor_points: np.ndarray, pose: tuple[float, float, float]) -> np.ndarray:
        """Sensor-frame half sweep + current ego pose (x, y, yaw) -> full ego-frame cloud for the histogram."""
        current = lidar_to_ego(sensor_points, self.cfg)
        if self._last_points is not None and self._last_pose is not None:
            full = np.concatenate([current, align_lidar(self._last_points, self._last_pose, pose)], axis=0)
        else:
            full = current
        self._last_points, self._last_pose = current.copy(), tuple(float(v) for v in pose)
        return full


def bev_inputs(
    frame_bgr: np.ndarray, lidar_points_ego: np.ndarray, cfg: BEVConfig, dtype: torch.dtype = torch.bfloat16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-1 encoder inputs: image (1, 3, h, w) 0..255 and LiDAR (1, C, H, W), cast to ``dtype`` (bf16 released)."""
    image = torch.from_numpy(camera_array(frame_bgr, cfg))[None].to(dtype)
    lidar = torch.from_numpy(lidar_histogram(lidar_points_ego, cfg))[None].to(dtype)
    return image, lidar


def lidar_grid_cell(x: float, y: float, cfg: BEVConfig) -> tuple[int, int]:
    """(row, column) of the histogram pixel that an ego-frame point (x, y) falls into (for tests and overlays)."""
    ppm = cfg.pixels_per_meter
    return int(math.floor((y - cfg.min_y) * ppm)), int(math.floor((x - cfg.min_x) * ppm))
