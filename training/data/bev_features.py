"""The BEV-encoder input of a training sample: where the released action branch's BEV tokens come from.

The released AutoMoT feeds the action expert ``H*W`` BEV tokens (64 = 8 x 8 for the 4B release), the row-major
flattening of the BEV encoder's ``[C, H, W]`` feature at the sample's current frame. Its training reads them in
one of two ways (OscarHuangWind/AutoMoT @ 278fa5a, ``docs/TRAINING.md`` and
``Automot/mot/data/automot/pdm_lite_bev_encoder_dataset.py``):

- **precomputed**: ``ROUTE/bev_encoder_feature/route_features.pt``, a ``torch.save`` dict with ``frame_nums``
  (zero-padded frame ids such as ``"0003"``), ``bev_features`` ``[num_frames, C, H, W]`` (``[N, 1512, 8, 8]``
  released) and optionally ``bev_upsamples`` ``[num_frames, 64, 64, 64]``; the row names the file in
  ``bev_encoder_feature`` (relative to the data root) and the frame in ``bev_encoder_feature_frame``;
- **online fallback** (file missing, unreadable or without the frame): the frozen encoder runs on the current
  frame's ``rgb/<frame>.jpg`` and ``bev_encoder_lidar_bev/<frame>.npy`` of the same route.

A sample with neither is skipped (``filter_samples`` counts it; ``automot data doctor`` reports it).

Camera preprocessing of the stored JPEG: OpenCV decode (BGR), BGR -> RGB, crop, CHW float 0..255
(``Automot/mot/modeling/bev_encoder/backbone_extractor.py`` ``preprocess_rgb`` at 278fa5a) -- exactly
``model/released/sensors.py camera_array(jpeg=False)``: at inference the agent's JPEG round trip makes the same
bytes a stored frame already is. LiDAR arrays are ``[C, H, W]`` float histograms; an ``[H, W, C]`` array is
transposed and a 2-channel array given to a 1-channel encoder keeps channel 1 (the "above" channel), the same
rules as the authors' ``extract_pdm_lite_bev_encoder_features.py`` ``load_lidar_bev``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automot.training.data.schema import DatasetError, Episode

FEATURE_DIR = "bev_encoder_feature"
FEATURE_FILE = "route_features.pt"
LIDAR_DIR = "bev_encoder_lidar_bev"
PRECOMPUTED, ONLINE = "precomputed", "online"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BEVRef:
    """Where one sample's BEV input lives: the route's feature file + frame id, and the online inputs."""

    feature_file: Path
    frame: str  # zero-padded, as in frame_nums
    rgb: Path
    lidar: Path


def route_ref(route: Path, frame: int, feature_file: Path | None = None, digits: int = 4, rgb_dir: str = "rgb"):
    """The BEVRef of ``frame`` in a route folder (feature file: the row's, else the route's default one)."""
    name = f"{int(frame):0{digits}d}"
    return BEVRef(
        feature_file if feature_file is not None else route / FEATURE_DIR / FEATURE_FILE,
        name,
        route / rgb_dir / f"{name}.jpg",
        route / LIDAR_DIR / f"{name}.npy",
    )


@dataclass
class RouteFeatures:
    """A validated ``route_features.pt`` (tensors memory-mapped: reading one frame reads only that frame)."""

    path: Path
    frame_nums: list[str]
    bev_features: torch.Tensor  # [N, C, H, W]
    bev_upsamples: torch.Tensor | None  # [N, C', H', W'] or None

    def __post_init__(self) -> None:
        self._index = {f: i for i, f in enumerate(self.frame_nums)}

    def index(self, frame: str) -> int | None:
        return self._index.get(str(frame).zfill(4))

    def tokens(self, frame: str) -> torch.Tensor | None:
        """float32 (H*W, C) tokens of ``frame``, row-major over (H, W) as the agent flattens the encoder output
        (runtime/scene.py), or None when the file has no such frame."""
        i = self.index(frame)
        if i is None:
            return None
        return self.bev_features[i].float().flatten(1).transpose(0, 1).contiguous()


def load_route_features(path: str | Path, feature_shape: tuple[int, int, int] | None = None) -> RouteFeatures:
    """Read and check a ``route_features.pt``; DatasetError naming the file and the problem otherwise.

    ``feature_shape`` (C, H, W): what the model's encoder produces (1512, 8, 8 released)."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing") from None
    except Exception as exc:  # truncated zip, pickle error, not a torch file ...
        raise DatasetError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "bev_features" not in data or "frame_nums" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetError(f"{path}: expected a dict with 'frame_nums' and 'bev_features', got {keys}")
    frames = [str(f).zfill(4) for f in list(data["frame_nums"])]
    feats = data["bev_features"]
    if not isinstance(feats, torch.Tensor) or feats.ndim != 4 or not feats.is_floating_point():
        got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise DatasetError(f"{path}: bev_features must be a float [num_frames, C, H, W] tensor, got {got}")
    if feats.shape[0] != len(frames):
        raise DatasetError(f"{path}: bev_features has {feats.shape[0]} frames but frame_nums {len(frames)}")
    if len(set(frames)) != len(frames):
        raise DatasetError(f"{path}: frame_nums has duplicate frame ids")
    if feature_shape is not None and tuple(feats.shape[1:]) != tuple(feature_shape):
        raise DatasetError(
            f"{path}: bev_features is [N, {', '.join(map(str, feats.shape[1:]))}], the model's BEV "
            f"encoder gives [N, {', '.join(map(str, feature_shape))}]"
        )
    ups = data.get("bev_upsamples")
    if ups is not None and (not isinstance(ups, torch.Tensor) or ups.ndim != 4 or ups.shape[0] != len(frames)):
        got = tuple(ups.shape) if isinstance(ups, torch.Tensor) else type(ups).__name__
        raise DatasetError(f"{path}: bev_upsamples must be [num_frames={len(frames)}, C, H, W], got {got}")
    return RouteFeatures(path, frames, feats, ups)


def read_lidar_bev(path: str | Path, channels: int | None = None) -> np.ndarray:
    """float32 (C, H, W) LiDAR histogram from ``bev_encoder_lidar_bev/<frame>.npy`` (layout rules: module doc)."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable .npy ({exc})") from None
    if arr.ndim == 3 and arr.shape[0] not in (1, 2) and arr.shape[-1] in (1, 2):
        arr = np.transpose(arr, (2, 0, 1))
    if arr.ndim != 3 or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DatasetError(f"{path}: expected a numeric [C, H, W] LiDAR histogram, got {arr.dtype} {arr.shape}")
    if channels is not None and arr.shape[0] != channels:
        if arr.shape[0] == 2 and channels == 1:
            arr = arr[1:2]
        else:
            raise DatasetError(f"{path}: {arr.shape[0]} LiDAR channels, the BEV encoder takes {channels}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DatasetError(f"{path}: LiDAR histogram has NaN/inf values")
    return out


def read_camera(path: str | Path, bev_config: Any) -> np.ndarray:
    """float32 (3, h, w) RGB 0..255 encoder input from a stored front-camera JPEG (see the module doc)."""
    import cv2

    from automot.model.released.sensors import camera_array

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path}: missing or not a decodable image")
    try:
        return camera_array(bgr, bev_config, jpeg=False)
    except ValueError as exc:
        raise DatasetError(f"{path}: {exc}") from None


def online_inputs(ref: BEVRef, bev_config: Any) -> dict[str, np.ndarray]:
    """The encoder inputs ``{"rgb", "lidar"}`` of one sample, shaped like the agent's ``DrivingState.scene_inputs``."""
    lidar = read_lidar_bev(ref.lidar, int(bev_config.lidar_in_channels))
    want = (int(bev_config.lidar_resolution_height), int(bev_config.lidar_resolution_width))
    if lidar.shape[1:] != want:
        raise DatasetError(f"{ref.lidar}: LiDAR grid {lidar.shape[1:]}, the BEV encoder takes {want}")
    return {"rgb": read_camera(ref.rgb, bev_config), "lidar": lidar}


class BEVSource:
    """Per process: a sample's precomputed tokens, else its online inputs (``resolve``); keeps a few feature
    files open (memory-mapped) and remembers unreadable ones. Picklable for DataLoader workers (caches dropped)."""

    def __init__(self, bev_config: Any = None, feature_shape: tuple[int, int, int] | None = None, keep: int = 8):
        self.bev_config = bev_config  # None: no online fallback (no encoder available)
        self.feature_shape = feature_shape
        self.keep = keep
        self._open: OrderedDict[Path, RouteFeatures] = OrderedDict()
        self._bad: dict[Path, str] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": OrderedDict(), "_bad": {}}

    def features(self, path: Path) -> RouteFeatures | None:
        """The route's feature file, or None (missing / unreadable: the reason is in ``problem(path)``)."""
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        if path in self._bad:
            return None
        try:
            feats = load_route_features(path, self.feature_shape)
        except DatasetError as exc:
            self._bad[path] = str(exc)
            return None
        self._open[path] = feats
        while len(self._open) > self.keep:
            self._open.popitem(last=False)
        return feats

    def problem(self, path: Path) -> str | None:
        return self._bad.get(path)

    def availability(self, ref: BEVRef) -> str | None:
        """PRECOMPUTED, ONLINE or None (neither path can serve the sample)."""
        feats = self.features(ref.feature_file)
        if feats is not None and feats.index(ref.frame) is not None:
            return PRECOMPUTED
        if self.bev_config is not None and ref.rgb.is_file() and ref.lidar.is_file():
            return ONLINE
        return None

    def resolve(self, ref: BEVRef) -> tuple[str, Any]:
        """(PRECOMPUTED, float32 (N, C) tokens) or (ONLINE, {"rgb", "lidar"}); DatasetError when neither."""
        feats = self.features(ref.feature_file)
        tokens = feats.tokens(ref.frame) if feats is not None else None
        if tokens is not None:
            return PRECOMPUTED, tokens
        if self.bev_config is None:
            why = self.problem(ref.feature_file) or f"{ref.feature_file}: no frame {ref.frame}"
            raise DatasetError(f"{why} (and no BEV encoder for the online fallback)")
        return ONLINE, online_inputs(ref, self.bev_config)


def filter_samples(episodes: list[Episode], source: BEVSource, problems: list[str] | None = None) -> dict[str, int]:
    """Drop samples neither BEV path can serve; returns counts {precomputed, online, skipped} (skips logged and
    appended to ``problems``). Episodes without a ``bev_ref`` (a layout without BEV inputs) are all skipped."""
    counts = {PRECOMPUTED: 0, ONLINE: 0, "skipped": 0}
    for ep in episodes:
        kept = []
        for rec in ep.records:
            kind = source.availability(ep.bev_ref(rec.frame)) if ep.bev_ref is not None else None
            if kind is None:
                counts["skipped"] += 1
            else:
                counts[kind] += 1
                kept.append(rec)
        dropped = len(ep.records) - len(kept)
        if dropped:
            message = f"{ep.name}: {dropped} sample(s) skipped: neither precomputed BEV features nor online inputs"
            log.warning(message)
            if problems is not None:
                problems.append(message)
        ep.records = kept
    return counts
