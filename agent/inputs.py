"""Validation and decoding of the leaderboard's ``input_data`` plus the camera history buffer.

Payload formats: docs/leaderboard-agent-interface.md §4. Every problem raises ``InputError`` naming the sensor and what
was expected versus received, so a misbehaving simulator or world is diagnosed from one log line.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from automot.agent.rigs import CAMERA, GNSS, IMU, LIDAR, SPEEDOMETER, Rig, SensorSpec


class InputError(ValueError):
    """An ``input_data`` entry that is missing or malformed."""

    def __init__(self, sensor: str, expected: str, got: str) -> None:
        super().__init__(f"input '{sensor}': expected {expected}, got {got}")
        self.sensor, self.expected, self.got = sensor, expected, got


def describe(value: object) -> str:
    """Short type/shape description of a payload for error messages."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"dict with keys {sorted(map(str, value))}"
    return f"{type(value).__name__} {value!r}"[:120]


@dataclass(frozen=True)
class SensorFrame:
    """One tick of decoded sensor data."""

    frame: int  # simulator frame number reported with the payloads (-1 if unknown)
    images: dict[str, np.ndarray]  # camera id -> RGB uint8 (H, W, 3)
    gps: np.ndarray  # (3,) lat, lon (degrees), alt
    imu: np.ndarray  # (7,) acc xyz, gyro xyz, compass (compass may be NaN)
    speed: float  # forward speed, m/s (signed as the speedometer reports it; the agent flags a negative one)
    lidar: np.ndarray | None  # (N, 4) float32 in the sensor frame, when the rig has a LiDAR
    # Why ``gps`` is unusable this tick (complex, non-finite or out-of-range value; ``gps`` is then NaN), else None.
    # The agent flags it in the tick record and keeps its pose estimate instead of braking on one bad fix.
    gps_problem: str | None = None
    # Why the IMU compass is unusable this tick (non-finite, or outside [-2 pi, 2 pi]: no heading is); ``imu[6]`` is
    # then NaN, so the heading falls back like on CARLA's NaN frames. Flagged by the agent, like a bad GNSS fix.
    compass_problem: str | None = None

    @property
    def compass(self) -> float:
        return float(self.imu[6])


def _payload(input_data: Mapping, sensor_id: str) -> tuple[int, object]:
    if sensor_id not in input_data:
        raise InputError(sensor_id, "an entry (frame, data)", f"no entry (present: {sorted(map(str, input_data))})")
    entry = input_data[sensor_id]
    if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != 2:
        raise InputError(sensor_id, "a (frame, data) pair", describe(entry))
    frame, data = entry
    if data is None:
        raise InputError(sensor_id, "a payload", "None")
    try:
        frame_no = int(frame)
    except (TypeError, ValueError):
        frame_no = -1  # the frame number is informational only
    return frame_no, data


def _vector(sensor_id: str, data: object, length: int, what: str) -> np.ndarray:
    if not isinstance(data, (np.ndarray, Sequence)) or isinstance(data, str):
        raise InputError(sensor_id, f"{what}: float array ({length},)", describe(data))
    arr = np.asarray(data)
    if arr.shape != (length,) or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(sensor_id, f"{what}: float array ({length},)", describe(arr))
    return arr.astype(np.float64)


def decode_camera(spec: SensorSpec, data: object) -> np.ndarray:
    """BGRA uint8 (H, W, 4) -> contiguous RGB uint8 (H, W, 3), checked against the rig's size."""
    expected = f"uint8 BGRA array ({spec.height}, {spec.width}, 4)"
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (spec.height, spec.width, 4):
        raise InputError(spec.id, expected, describe(data))
    return cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)


GNSS_VALUES = "finite real lat in (-90, 90), lon in [-180, 180] and alt"


def check_gnss(spec: SensorSpec, data: object) -> tuple[np.ndarray, str | None]:
    """[lat, lon, alt] and None, or a NaN fix and what is wrong with the value (complex, non-finite, out of range).

    A payload that is not a 3-vector of numbers at all raises InputError (a broken sensor, not a bad fix).
    Latitude +-90 is refused too: the Mercator projection of a pole is infinite.
    """
    if isinstance(data, (np.ndarray, Sequence)) and not isinstance(data, str):
        arr = np.asarray(data)
        if arr.shape == (3,) and np.iscomplexobj(arr):
            return np.full(3, np.nan), f"expected {GNSS_VALUES}, got complex values {arr.tolist()}"
    gps = _vector(spec.id, data, 3, "[lat, lon, alt]")
    lat, lon, alt = gps
    if not (math.isfinite(lat) and math.isfinite(lon) and math.isfinite(alt)):
        return np.full(3, np.nan), f"expected {GNSS_VALUES}, got non-finite lat {lat}, lon {lon}, alt {alt}"
    if not (-90.0 < lat < 90.0 and -180.0 <= lon <= 180.0):
        return np.full(3, np.nan), f"expected {GNSS_VALUES}, got lat {lat}, lon {lon}"
    return gps, None


def decode_gnss(spec: SensorSpec, data: object) -> np.ndarray:
    """[lat, lon, alt] with finite, real, in-range values; raises InputError otherwise."""
    gps, problem = check_gnss(spec, data)
    if problem is not None:
        raise InputError(spec.id, GNSS_VALUES, problem.split(", got ", 1)[1])
    return gps


def decode_imu(spec: SensorSpec, data: object) -> np.ndarray:
    """[acc xyz, gyro xyz, compass]; the compass is checked by :func:`check_compass`, not here."""
    imu = _vector(spec.id, data, 7, "[acc_x, acc_y, acc_z, gyro_x, gyro_y, gyro_z, compass]")
    if not np.all(np.isfinite(imu[:6])):
        raise InputError(spec.id, "finite accelerometer/gyroscope values", f"{imu.tolist()}")
    return imu


COMPASS_LIMIT = 2.0 * math.pi  # radians: a heading is within one turn either way of north (0)


def check_compass(imu: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``imu`` with a compass that cannot be a heading (NaN, inf, |value| > 2 pi) set to NaN, and why (else None)."""
    value = float(imu[6])
    if math.isfinite(value) and abs(value) <= COMPASS_LIMIT:
        return imu, None
    imu = imu.copy()
    imu[6] = math.nan
    return imu, f"IMU compass {value:.6g} rad is not a heading (finite, within [-2 pi, 2 pi]): ignored"


def decode_speed(spec: SensorSpec, data: object) -> float:
    """{'speed': m/s} -> finite float."""
    if not isinstance(data, Mapping) or "speed" not in data:
        raise InputError(spec.id, "dict {'speed': float}", describe(data))
    if np.iscomplexobj(data["speed"]):  # float() would silently drop the imaginary part of a numpy complex
        raise InputError(spec.id, "a real 'speed'", describe(data["speed"]))
    try:
        speed = float(data["speed"])
    except (TypeError, ValueError):
        raise InputError(spec.id, "a numeric 'speed'", describe(data["speed"])) from None
    if not math.isfinite(speed):
        raise InputError(spec.id, "a finite 'speed'", str(speed))
    return speed


def decode_lidar(spec: SensorSpec, data: object) -> np.ndarray:
    """float (N, 4) points x, y, z, intensity with finite values."""
    if (
        not isinstance(data, np.ndarray)
        or data.ndim != 2
        or data.shape[1] != 4
        or not np.issubdtype(data.dtype, np.floating)
    ):
        raise InputError(spec.id, "float32 array (N, 4)", describe(data))
    if not np.all(np.isfinite(data)):
        raise InputError(spec.id, "finite point coordinates", "NaN/inf values")
    return data.astype(np.float32, copy=False)


def parse_input_data(input_data: object, rig: Rig) -> SensorFrame:
    """Check every sensor of ``rig`` in ``input_data`` and decode it; raises InputError on the first problem.

    Except a GNSS *value* problem (complex, non-finite, out of range): returned in ``SensorFrame.gps_problem``, so
    the agent can keep its pose estimate for that tick.
    """
    if not isinstance(input_data, Mapping):
        raise InputError("input_data", "dict {sensor_id: (frame, data)}", describe(input_data))
    images: dict[str, np.ndarray] = {}
    gps = imu = lidar = gps_problem = compass_problem = None
    speed = 0.0
    frame = -1
    for spec in rig.sensors:
        frame_no, data = _payload(input_data, spec.id)
        frame = max(frame, frame_no)
        if spec.type == CAMERA:
            images[spec.id] = decode_camera(spec, data)
        elif spec.type == GNSS:
            gps, gps_problem = check_gnss(spec, data)
        elif spec.type == IMU:
            imu, compass_problem = check_compass(decode_imu(spec, data))
        elif spec.type == SPEEDOMETER:
            speed = decode_speed(spec, data)
        elif spec.type == LIDAR:
            lidar = decode_lidar(spec, data)
    if gps is None or imu is None:
        raise InputError(rig.name, "a rig with GNSS and IMU", "a rig without them")
    return SensorFrame(
        frame=frame, images=images, gps=gps, imu=imu, speed=speed, lidar=lidar, gps_problem=gps_problem,
        compass_problem=compass_problem,
    )  # fmt: skip


class FrameHistory:
    """Ring buffer of RGB frames; ``select`` returns the frames at the configured tick offsets, oldest first.

    Until enough frames exist, missing older frames repeat the oldest one so the model always gets a full set.
    """

    def __init__(self, maxlen: int = 40, offsets: Sequence[int] = (15, 10, 5, 0)) -> None:
        if any(o < 0 or o >= maxlen for o in offsets):
            raise ValueError(f"history offsets {list(offsets)} must lie in [0, {maxlen})")
        self.offsets = tuple(sorted((int(o) for o in offsets), reverse=True))  # oldest first
        self._frames: deque[np.ndarray] = deque(maxlen=maxlen)

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: np.ndarray) -> None:
        self._frames.append(frame)

    def select(self) -> list[np.ndarray]:
        """Frames t - offset for each offset (oldest first); empty if nothing was pushed."""
        if not self._frames:
            return []
        last = len(self._frames) - 1
        return [self._frames[max(last - o, 0)] for o in self.offsets]
