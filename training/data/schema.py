"""The driving-sample schema shared by every reader, the writer and the torch dataset.

Conventions (the model's, docs/released-agent.md §2): ego frame with x forward and y to the right, metres;
speeds in m/s; the path has ``num_route_points`` points spaced ``path_spacing`` metres along the road (the
origin itself is not a path point); waypoints are the ego's future positions at k * ``waypoint_dt`` seconds,
k = 1..num_waypoints. Meta-action decisions are one string each for now, +1 s and +2 s, from DECISIONS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automot.errors import UsageError
from automot.meta_actions import DECISION_SLOTS, DECISIONS

FORMAT_NAME = "automot-driving"
FORMAT_VERSION = 1

NUM_DECISION_SLOTS = DECISION_SLOTS  # now, +1 s, +2 s
NUM_ROUTE_POINTS = 20
NUM_WAYPOINTS = 6
WAYPOINT_DT = 0.5
PATH_SPACING = 1.0  # metres between path points (CarLLaVA / SimLingo path representation)


class DatasetError(UsageError):
    """A dataset on disk is malformed; the message names the file (and line / field)."""


@dataclass
class QAPair:
    """One templated scene question with its answer (semantic prompting / reasoning supervision)."""

    question: str
    answer: str


@dataclass
class SampleRecord:
    """One training sample, exactly what one ``samples.jsonl`` line stores.

    ``history`` lists earlier frame indices (oldest first) whose images precede the current ``frame`` in the
    prompt; the reader repeats the oldest one when the model wants more frames than are stored.
    """

    frame: int
    history: list[int]
    speed: float
    target_points: np.ndarray  # (2, 2): current and next target point
    path: np.ndarray  # (NUM_ROUTE_POINTS, 2)
    waypoints: np.ndarray  # (NUM_WAYPOINTS, 2)
    decisions: list[str]  # NUM_DECISION_SLOTS strings
    qa: list[QAPair] = field(default_factory=list)
    # The prompt's frames exactly as a sample list names them (AutoMoT rows: the four ``image`` frames, which the
    # current frame need not be among); None: ``history + [frame]``. Not stored in samples.jsonl.
    prompt_frames: list[int] | None = None

    def validate(self, where: str) -> None:
        """Shapes, finiteness and vocabulary; raise DatasetError prefixed with ``where``."""
        shapes = {"target_points": (2, 2), "path": None, "waypoints": None}
        for name, shape in shapes.items():
            arr = getattr(self, name)
            if arr.ndim != 2 or arr.shape[1] != 2 or (shape is not None and arr.shape != shape):
                raise DatasetError(f"{where}: {name} must have shape {shape or '(N, 2)'}, got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise DatasetError(f"{where}: {name} has non-finite values")
        if not math.isfinite(self.speed):
            raise DatasetError(f"{where}: speed is not finite ({self.speed})")
        if len(self.decisions) != NUM_DECISION_SLOTS:
            raise DatasetError(f"{where}: decisions must have {NUM_DECISION_SLOTS} entries, got {self.decisions}")
        bad = [d for d in self.decisions if d not in DECISIONS]
        if bad:
            raise DatasetError(f"{where}: unknown decision(s) {bad}; expected some of {list(DECISIONS)}")

    @property
    def decision_text(self) -> str:
        """The supervised decision sentence, e.g. ``"keep, decelerate, stop"`` (released format)."""
        return ", ".join(self.decisions)

    def to_json(self) -> dict:
        def rounded(a: np.ndarray) -> list:
            # float32 precision is what the model sees; 6 decimals (micrometres) keep JSON small and exact enough.
            return np.round(np.asarray(a, dtype=np.float64), 6).tolist()

        return {
            "frame": int(self.frame),
            "history": [int(h) for h in self.history],
            "speed": round(float(self.speed), 6),
            "target_points": rounded(self.target_points),
            "path": rounded(self.path),
            "waypoints": rounded(self.waypoints),
            "decisions": list(self.decisions),
            "qa": [{"q": p.question, "a": p.answer} for p in self.qa],
        }

    @classmethod
    def from_json(cls, row: dict, where: str) -> SampleRecord:
        required = ("frame", "history", "speed", "target_points", "path", "waypoints", "decisions")
        missing = [k for k in required if k not in row]
        if missing:
            raise DatasetError(f"{where}: missing field(s) {missing}")
        try:
            qa = [QAPair(str(p["q"]), str(p["a"])) for p in row.get("qa", [])]
            rec = cls(
                frame=int(row["frame"]),
                history=[int(h) for h in row["history"]],
                speed=float(row["speed"]),
                target_points=np.asarray(row["target_points"], dtype=np.float64),
                path=np.asarray(row["path"], dtype=np.float64),
                waypoints=np.asarray(row["waypoints"], dtype=np.float64),
                decisions=[str(d) for d in row["decisions"]],
                qa=qa,
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise DatasetError(f"{where}: malformed value ({exc})") from None
        rec.validate(where)
        return rec


@dataclass
class CameraInfo:
    """One recorded camera: image size, horizontal FOV and the 3x3 pinhole intrinsics (pixels)."""

    width: int
    height: int
    fov: float
    intrinsics: list  # 3x3 nested list
    extrinsics: dict = field(default_factory=dict)  # x/y/z metres, roll/pitch/yaw degrees (ego frame)

    @staticmethod
    def pinhole(width: int, height: int, fov_deg: float) -> list:
        """CARLA's pinhole model: focal = width / (2 tan(fov/2)), principal point at the centre."""
        f = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
        return [[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]]


@dataclass
class DatasetMeta:
    """``meta.json`` of a dataset root."""

    rig: str
    cameras: dict  # camera id -> CameraInfo
    frame_rate_hz: float
    image_format: str = "jpg"
    waypoint_dt: float = WAYPOINT_DT
    path_spacing: float = PATH_SPACING
    source: str = ""  # free text: which world / expert / reader produced it
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "version": self.version,
            "rig": self.rig,
            "frame_rate_hz": self.frame_rate_hz,
            "image_format": self.image_format,
            "waypoint_dt": self.waypoint_dt,
            "path_spacing": self.path_spacing,
            "num_route_points": NUM_ROUTE_POINTS,
            "num_waypoints": NUM_WAYPOINTS,
            "decisions": list(DECISIONS),
            "source": self.source,
            "cameras": {k: vars(v) for k, v in self.cameras.items()},
        }

    @classmethod
    def from_json(cls, data: dict, where: str) -> DatasetMeta:
        if data.get("format") != FORMAT_NAME:
            raise DatasetError(f"{where}: format is {data.get('format')!r}, expected {FORMAT_NAME!r}")
        if int(data.get("version", -1)) > FORMAT_VERSION:
            raise DatasetError(f"{where}: version {data.get('version')} is newer than supported ({FORMAT_VERSION})")
        try:
            cams = {k: CameraInfo(**v) for k, v in data["cameras"].items()}
            return cls(
                rig=str(data["rig"]),
                cameras=cams,
                frame_rate_hz=float(data["frame_rate_hz"]),
                image_format=str(data.get("image_format", "jpg")),
                waypoint_dt=float(data.get("waypoint_dt", WAYPOINT_DT)),
                path_spacing=float(data.get("path_spacing", PATH_SPACING)),
                source=str(data.get("source", "")),
                version=int(data["version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: malformed meta ({exc!r})") from None


@dataclass
class Episode:
    """A sequence of samples plus a way to load any of its frames (whatever the on-disk layout)."""

    name: str
    records: list[SampleRecord]
    image_path: Callable[[int], Path]  # frame index -> image file of the selected camera
    # frame index -> where its BEV-encoder input lives (training/data/bev_features.py BEVRef); None: the layout has
    # no BEV inputs
    bev_ref: Callable[[int], Any] | None = None

    def load_image(self, frame: int) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        from PIL import Image

        path = self.image_path(frame)
        if not path.is_file():
            raise DatasetError(f"{path}: image missing (episode {self.name}, frame {frame})")
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
