"""The BEV encoder's configuration: the released ``bev_config.json`` read as plain JSON, TF++ defaults otherwise.

The released file is a jsonpickle dump of TransFuser++'s ``GlobalConfig`` (hundreds of attributes, ``py/object``
markers, numpy arrays as ``{"py/object": "numpy.ndarray", "values": ...}``). We never unpickle: we read the JSON,
drop ``py/*`` markers, unwrap tuples/arrays and keep only the fields the encoder and its preprocessing use.
Defaults are TF++ ``GlobalConfig`` values (automot-checkpoint-spec.md §5.3); which fields came from the file is
recorded in ``from_file`` so callers can say when a value was assumed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automot.model.config import ConfigError


@dataclass
class BEVConfig:
    """Fields of TF++'s GlobalConfig that the BEV encoder (backbone + sensor preprocessing) reads."""

    image_architecture: str = "regnety_032"
    lidar_architecture: str = "regnety_032"
    use_ground_plane: bool = False
    lidar_seq_len: int = 1
    # GPT fusion: anchors are cropped_height // 32 x cropped_width // 32 (image) and 256 // 32 (LiDAR).
    img_vert_anchors: int = 12
    img_horz_anchors: int = 32
    lidar_vert_anchors: int = 8
    lidar_horz_anchors: int = 8
    n_layer: int = 2
    n_head: int = 4
    block_exp: int = 4
    normalize_imagenet: bool = True
    # Top-down path (built when detect_boxes or use_bev_semantic; unused by AutoMoT, kept so weights load).
    detect_boxes: bool = True
    use_bev_semantic: bool = True
    bev_features_chanels: int = 64  # sic: the released attribute name
    transformer_decoder_join: bool = True
    add_features: bool = True
    # Camera (the released rig's CAM_FRONT) and its crop (rows [0, cropped_height), width centred).
    camera_width: int = 1024
    camera_height: int = 512
    crop_image: bool = True
    cropped_height: int = 384
    cropped_width: int = 1024
    # LiDAR histogram.
    lidar_resolution_width: int = 256
    lidar_resolution_height: int = 256
    min_x: float = -32.0
    max_x: float = 32.0
    min_y: float = -32.0
    max_y: float = 32.0
    pixels_per_meter: float = 4.0
    hist_max_per_pixel: float = 5.0
    lidar_split_height: float = 0.2
    max_height_lidar: float = 100.0
    lidar_pos: list = field(default_factory=lambda: [0.0, 0.0, 2.5])
    lidar_rot: list = field(default_factory=lambda: [0.0, 0.0, -90.0])
    realign_lidar: bool = True
    from_file: frozenset = field(default_factory=frozenset, compare=False)

    @property
    def lidar_in_channels(self) -> int:
        return (2 if self.use_ground_plane else 1) * self.lidar_seq_len

    def image_shape(self, width: int | None = None, height: int | None = None) -> tuple[int, int]:
        """(rows, columns) of the encoder's camera input for a ``width`` x ``height`` frame (default: the rig's).

        Same arithmetic as the released crop: rows [0, cropped_height) and (width - cropped_width) // 2 columns
        cut on each side, so an odd difference keeps one extra column.
        """
        w = self.camera_width if width is None else int(width)
        h = self.camera_height if height is None else int(height)
        if not self.crop_image:
            return h, w
        side = (w - self.cropped_width) // 2
        return min(self.cropped_height, h), w - 2 * side

    @property
    def has_top_down(self) -> bool:
        return bool(self.detect_boxes or self.use_bev_semantic)

    def validate(self) -> None:
        if self.lidar_seq_len != 1:
            raise ConfigError(f"bev_config: lidar_seq_len={self.lidar_seq_len}; only single-sweep LiDAR is supported")
        for name in ("image_architecture", "lidar_architecture"):
            arch = getattr(self, name)
            if arch.startswith("video_"):
                raise ConfigError(f"bev_config: {name}={arch!r} (temporal LiDAR encoders are not supported)")
        if not self.has_top_down:
            raise ConfigError(
                "bev_config: detect_boxes and use_bev_semantic are both off; the released encoder then has no x4 "
                "BEV feature, which AutoMoT needs"
            )

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("from_file")
        return data

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))


def _plain(value: Any) -> Any:
    """Undo jsonpickle wrappers we can understand: tuples, numpy arrays/scalars; leave others as they are."""
    if isinstance(value, dict):
        if "py/tuple" in value:
            return [_plain(v) for v in value["py/tuple"]]
        if value.get("py/object", "").startswith("numpy") and "values" in value:
            return _plain(value["values"])
        if "py/reduce" in value or "py/b64" in value:
            return value  # opaque (e.g. binary numpy); only an error if the field is one we use
        return {k: _plain(v) for k, v in value.items() if not k.startswith("py/")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _coerce(name: str, default: Any, value: Any, source: str) -> Any:
    if isinstance(default, bool):
        if isinstance(value, (bool, int)) and not isinstance(value, float):
            return bool(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list):
        if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            return [float(v) for v in value]
    raise ConfigError(f"{source}: field {name!r} has {type(value).__name__} {value!r}, expected like {default!r}")


def bev_config_from_dict(data: dict, source: str = "bev_config") -> BEVConfig:
    """Known fields from a (jsonpickle) dict; unknown ones ignored; wrong types are errors naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    data = _plain(data)
    base = BEVConfig()
    values, seen = {}, set()
    for f in dataclasses.fields(BEVConfig):
        if f.name == "from_file" or f.name not in data:
            continue
        values[f.name] = _coerce(f.name, getattr(base, f.name), data[f.name], source)
        seen.add(f.name)
    cfg = dataclasses.replace(base, **values, from_file=frozenset(seen))
    cfg.validate()
    return cfg


def load_bev_config(path: str | Path | None) -> BEVConfig:
    """Read ``bev_config.json`` (released jsonpickle dump or ours); TF++ defaults when ``path`` is None."""
    if path is None:
        cfg = BEVConfig()
        cfg.validate()
        return cfg
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: not found") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    return bev_config_from_dict(data, str(path))
