"""Named sensor rigs, leaderboard sensor-limit validation and the pinhole camera model of each camera.

Poses are in the ego frame with CARLA axes (x forward, y right, z up; degrees; yaw clockwise from above).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from automot.errors import ConfigError

CAMERA = "sensor.camera.rgb"
LIDAR = "sensor.lidar.ray_cast"
RADAR = "sensor.other.radar"
GNSS = "sensor.other.gnss"
IMU = "sensor.other.imu"
SPEEDOMETER = "sensor.speedometer"
OPENDRIVE = "sensor.opendrive_map"

# SENSORS-track limits and mount radius (docs/leaderboard-agent-interface.md §3).
SENSOR_LIMITS = {CAMERA: 8, LIDAR: 2, RADAR: 4, GNSS: 1, IMU: 1, OPENDRIVE: 1, SPEEDOMETER: 1}
QUALIFIER_LIMITS = {**SENSOR_LIMITS, CAMERA: 4, LIDAR: 1, RADAR: 2}
MAX_SENSOR_RADIUS_M = 3.0


class SensorConfigError(ConfigError):
    """A sensor list the leaderboard would reject."""


@dataclass(frozen=True)
class SensorSpec:
    """One sensor entry of ``sensors()``."""

    id: str
    type: str
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    width: int | None = None  # cameras only
    height: int | None = None
    fov: float | None = None  # horizontal field of view, degrees
    reading_frequency: float | None = None  # speedometer only

    @property
    def is_camera(self) -> bool:
        return self.type == CAMERA

    def to_dict(self) -> dict:
        """The leaderboard's sensor dict."""
        if self.type == SPEEDOMETER:
            return {"type": self.type, "reading_frequency": self.reading_frequency or 20, "id": self.id}
        out = {"type": self.type, "x": self.x, "y": self.y, "z": self.z}
        if self.type != GNSS:  # the wrapper ignores a GNSS rotation, so do not pretend it matters
            out.update(roll=self.roll, pitch=self.pitch, yaw=self.yaw)
        if self.is_camera:
            out.update(width=self.width, height=self.height, fov=self.fov)
        out["id"] = self.id
        return out


@dataclass(frozen=True)
class Rig:
    """A named sensor set; ``primary_camera`` feeds the model, the recorder and Bench2Drive's rgb_front."""

    name: str
    sensors: tuple[SensorSpec, ...]
    primary_camera: str

    def cameras(self) -> list[SensorSpec]:
        return [s for s in self.sensors if s.is_camera]

    def get(self, sensor_id: str) -> SensorSpec:
        for spec in self.sensors:
            if spec.id == sensor_id:
                return spec
        raise KeyError(f"rig {self.name!r} has no sensor {sensor_id!r}")

    def of_type(self, sensor_type: str) -> list[SensorSpec]:
        return [s for s in self.sensors if s.type == sensor_type]

    def to_leaderboard(self) -> list[dict]:
        """List of sensor dicts for ``AutonomousAgent.sensors()``."""
        return [s.to_dict() for s in self.sensors]

    def with_image_size(self, width: int, height: int) -> Rig:
        """Same rig with every camera resized (fov kept, so intrinsics scale consistently)."""
        sensors = tuple(replace(s, width=width, height=height) if s.is_camera else s for s in self.sensors)
        return replace(self, sensors=sensors)


def _automot_front() -> Rig:
    # Released agent's rig (docs/released-agent.md §1): SimLingo's single camera plus a LiDAR.
    return Rig(
        name="automot-front",
        primary_camera="CAM_FRONT",
        sensors=(
            SensorSpec("CAM_FRONT", CAMERA, x=-1.5, z=2.0, width=1024, height=512, fov=110.0),
            SensorSpec("LIDAR", LIDAR, z=2.5, yaw=-90.0),
            SensorSpec("IMU", IMU),
            SensorSpec("GPS", GNSS),
            SensorSpec("SPEED", SPEEDOMETER, reading_frequency=20),
        ),
    )


def _bench2drive_6cam() -> Rig:
    # Bench2Drive / UniAD / VAD rig (docs/leaderboard-agent-interface.md §10), cameras at z 1.6 m, 1600 x 900.
    cams = [
        ("CAM_FRONT", 0.80, 0.00, 0.0, 70.0),
        ("CAM_FRONT_LEFT", 0.27, -0.55, -55.0, 70.0),
        ("CAM_FRONT_RIGHT", 0.27, 0.55, 55.0, 70.0),
        ("CAM_BACK", -2.00, 0.00, 180.0, 110.0),
        ("CAM_BACK_LEFT", -0.32, -0.55, -110.0, 70.0),
        ("CAM_BACK_RIGHT", -0.32, 0.55, 110.0, 70.0),
    ]
    sensors = [
        SensorSpec(cid, CAMERA, x=x, y=y, z=1.6, yaw=yaw, width=1600, height=900, fov=fov)
        for cid, x, y, yaw, fov in cams
    ]
    sensors += [
        SensorSpec("IMU", IMU, x=-1.4),
        SensorSpec("GPS", GNSS, x=-1.4),
        SensorSpec("SPEED", SPEEDOMETER, reading_frequency=20),
    ]
    return Rig(name="bench2drive-6cam", primary_camera="CAM_FRONT", sensors=tuple(sensors))


RIGS = {"automot-front": _automot_front, "bench2drive-6cam": _bench2drive_6cam}


class UnknownRigError(ConfigError, KeyError):
    """A rig name that is not in ``RIGS``: a user's input (exit 2, one line), still a KeyError for old callers."""

    __str__ = Exception.__str__  # KeyError would quote the message


def get_rig(name: str, image_size: tuple[int, int] | None = None) -> Rig:
    """Build a named rig, optionally with every camera at ``image_size`` = (width, height)."""
    if name not in RIGS:
        raise UnknownRigError(f"unknown rig {name!r}; known: {', '.join(sorted(RIGS))}")
    rig = RIGS[name]()
    if image_size is not None:
        rig = rig.with_image_size(int(image_size[0]), int(image_size[1]))
    return rig


def validate_sensors(sensors: list[dict], qualifier: bool = False, max_radius: float = MAX_SENSOR_RADIUS_M) -> None:
    """Raise SensorConfigError where the leaderboard's agent wrapper would reject ``sensors``."""
    limits = QUALIFIER_LIMITS if qualifier else SENSOR_LIMITS
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for entry in sensors:
        sid, stype = entry.get("id"), entry.get("type")
        if not sid or not stype:
            raise SensorConfigError(f"sensor entry needs 'type' and 'id': {entry}")
        if sid in seen:
            raise SensorConfigError(f"duplicate sensor id {sid!r}")
        seen.add(sid)
        if stype not in limits:
            raise SensorConfigError(f"sensor {sid!r}: unsupported type {stype!r}")
        counts[stype] = counts.get(stype, 0) + 1
        if counts[stype] > limits[stype]:
            raise SensorConfigError(f"too many {stype} sensors: at most {limits[stype]} allowed")
        if stype not in (SPEEDOMETER, OPENDRIVE):
            radius = math.sqrt(sum(float(entry.get(k, 0.0)) ** 2 for k in ("x", "y", "z")))
            if radius > max_radius:
                raise SensorConfigError(
                    f"sensor {sid!r} mounted {radius:.2f} m from the ego origin (max {max_radius} m)"
                )
        if stype == CAMERA:
            for key in ("width", "height", "fov"):
                if not isinstance(entry.get(key), (int, float)) or entry[key] <= 0:
                    raise SensorConfigError(
                        f"camera {sid!r}: '{key}' must be a positive number, got {entry.get(key)!r}"
                    )


def rotation_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """3x3 matrix whose columns are the sensor's forward, right and up axes in the parent frame (CARLA/UE4
    conventions, degrees): positive yaw turns right, positive pitch looks up."""
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    forward = [cp * cy, cp * sy, sp]
    right = [cy * sp * sr - sy * cr, sy * sp * sr + cy * cr, -cp * sr]
    up = [-cy * sp * cr - sy * sr, -sy * sp * cr + cy * sr, cp * cr]
    return np.array([forward, right, up], dtype=np.float64).T


def camera_intrinsics(spec: SensorSpec) -> np.ndarray:
    """3x3 pinhole matrix from width, height and horizontal fov (CARLA cameras have square pixels)."""
    if not spec.is_camera:
        raise ValueError(f"sensor {spec.id!r} is not a camera")
    focal = spec.width / (2.0 * math.tan(math.radians(spec.fov) / 2.0))
    return np.array([[focal, 0.0, spec.width / 2.0], [0.0, focal, spec.height / 2.0], [0.0, 0.0, 1.0]])


def camera_extrinsics(spec: SensorSpec) -> np.ndarray:
    """4x4 pose of the sensor in the ego frame (maps sensor-frame points, x fwd / y right / z up, to ego)."""
    pose = np.eye(4)
    pose[:3, :3] = rotation_matrix(spec.roll, spec.pitch, spec.yaw)
    pose[:3, 3] = (spec.x, spec.y, spec.z)
    return pose


def project_ego_points(
    points: np.ndarray,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    near: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Project ego-frame points to pixels.

    ``points`` is (N, 2) on the ground plane z = 0 or (N, 3). Returns (uv (N, 2), valid (N,)); points less than
    ``near`` metres in front of the camera are invalid (their uv is NaN) because they would flip through the
    image plane.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"points must be (N, 2) or (N, 3), got {pts.shape}")
    if pts.shape[1] == 2:
        pts = np.hstack([pts, np.zeros((len(pts), 1))])
    rot, trans = extrinsics[:3, :3], extrinsics[:3, 3]
    cam = (pts - trans) @ rot  # rows: (forward, right, up) in the camera frame
    valid = cam[:, 0] > near
    uv = np.full((len(pts), 2), np.nan)
    depth = cam[valid, 0]
    uv[valid, 0] = intrinsics[0, 0] * cam[valid, 1] / depth + intrinsics[0, 2]
    uv[valid, 1] = -intrinsics[1, 1] * cam[valid, 2] / depth + intrinsics[1, 2]
    return uv, valid
