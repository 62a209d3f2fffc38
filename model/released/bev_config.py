"""The BEV encoder's configuration: the released ``bev_config.json`` read as plain JSON, TF++ defaults otherwise.

The released file is a jsonpickle dump of TransFuser++'s ``GlobalConfig`` (hundreds of attributes, ``py/object``
markers, numpy arrays as ``{"py/object": "numpy.ndarray", "values": ...}``). We never unpickle: we read the JSON,
drop ``py/*`` markers, unwrap tuples/arrays and keep only the fields the encoder and its preprocessing use.
Defaults are TF++ ``GlobalConfig`` values (docs/released-agent.md §3); which fields came from the file is
recorded in ``from_file`` so callers can say when a value was assumed.

Types, field paths and the error class come from ``automot.config``; two quirks of the released dump are
accepted before that typed build: TF++ writes some flags as ``0`` / ``1`` (read as booleans) and whole-number
floats for counts (read as ints). Attributes we do not use are ignored, not reported: the dump has hundreds.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automot import config as typed_config
from automot.errors import ConfigError

__all__ = ["BEVConfig", "ConfigError", "bev_config_from_dict", "load_bev_config"]


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
    lidar_pos: list[float] = field(default_factory=lambda: [0.0, 0.0, 2.5])
    lidar_rot: list[float] = field(default_factory=lambda: [0.0, 0.0, -90.0])
    realign_lidar: bool = True
    # Bookkeeping, not a config value (init=False: neither saved nor loaded): the fields the file set.
    from_file: frozenset = field(default_factory=frozenset, compare=False, init=False)

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

    def validate(self, source: str = "bev_config") -> None:
        """Raise one ConfigError (prefixed with ``source``) listing every unsupported setting by field name."""
        problems = []
        if self.lidar_seq_len != 1:
            problems.append(f"lidar_seq_len: only single-sweep LiDAR (1) is supported, got {self.lidar_seq_len}")
        for name in ("image_architecture", "lidar_architecture"):
            arch = getattr(self, name)
            if arch.startswith("video_"):
                problems.append(f"{name}: temporal LiDAR encoders are not supported, got {arch!r}")
        if not self.has_top_down:
            problems.append(
                "use_bev_semantic: detect_boxes and use_bev_semantic are both off; the released encoder then has "
                "no x4 BEV feature, which AutoMoT needs"
            )
        typed_config.raise_problems(source, problems)

    def to_json(self) -> dict:
        return typed_config.to_dict(self)

    def save(self, path: str | Path) -> Path:
        """Write our ``bev_config.json`` (plain JSON, the format ``load_bev_config`` reads) atomically."""
        return typed_config.write_atomic(path, json.dumps(self.to_json(), indent=2))


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


def _released_quirks(data: dict) -> dict:
    """The known fields of a plain dict, with TF++'s 0/1 flags as bools and whole floats as ints."""
    hints = typing.get_type_hints(BEVConfig)
    out = {}
    for f in dataclasses.fields(BEVConfig):
        if not f.init or f.name not in data:
            continue
        value, tp = data[f.name], hints[f.name]
        if tp is bool and type(value) is int:
            value = bool(value)
        elif tp is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[f.name] = value
    return out


def bev_config_from_dict(data: dict, source: str = "bev_config") -> BEVConfig:
    """Known fields from a (jsonpickle) dict; unknown ones ignored; wrong types are errors naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    values = _released_quirks(_plain(data))
    cfg = typed_config.from_dict(BEVConfig, values, source=source)
    cfg.from_file = frozenset(values)
    cfg.validate(source)
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
    except FileNotFoundError:
        raise ConfigError(f"{path}: BEV config file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    return bev_config_from_dict(data, str(path))
