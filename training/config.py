"""Typed training configuration (``automot train --config CONFIG.yaml``), loaded from YAML.

Every problem raises ``TrainConfigError`` whose message starts with the dotted field path
(``stages[1].lora.rank: expected int, got str ('8')``), so a bad YAML is fixed from one line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STAGES = ("action", "joint", "refiner")
FORMATS = ("automot", "bench2drive", "pdm_lite")
PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "constant")


class TrainConfigError(ValueError):
    """A training-config value is missing, unknown, of the wrong type or out of range (message names the field)."""


@dataclass
class ModelSection:
    """Where the model comes from: exactly one of ``preset``, ``config`` (a model YAML) or ``init_from``."""

    preset: str | None = "tiny"
    config: str | None = None
    init_from: str | None = None  # a checkpoint directory written by save_pretrained (weights are loaded)
    overrides: dict = field(default_factory=dict)  # deep-merged into the preset/config dict (not init_from)


@dataclass
class DataSection:
    """Datasets (lists of roots) and loader settings. ``val`` empty: ``val_fraction`` of the episodes, evenly
    spread over the sorted episode list (training/data/__init__.py: split_episodes)."""

    format: str = "automot"
    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    val_fraction: float = 0.1
    camera: str | None = None  # None: the dataset's first camera (automot) / the format's front camera
    frame_rate_hz: float | None = None  # real layouts: recording rate (None: the reader's default)
    sample_list: str | None = None  # pdm_lite: an AutoMoT sample-list jsonl restricting the frames
    batch_size: int = 4
    num_workers: int = 0
    vqa: bool = False  # load scene Q/A pairs (needed when loss.vqa > 0)


@dataclass
class OptimSection:
    """AdamW + warmup/cosine schedule; ``grad_accum`` micro-batches per optimizer step."""

    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_steps: int = 20
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1


@dataclass
class LossSection:
    """Loss weights. ``vqa`` needs data.vqa and a trainable understanding expert (joint stage)."""

    path: float = 1.0
    waypoints: float = 1.0
    decision: float = 0.5
    vqa: float = 0.0
    refiner_flow: float = 1.0
    refiner_l1: float = 1.0


@dataclass
class LoraSection:
    """LoRA on the understanding expert's language layers (peft)."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class StageSection:
    """One training stage. ``lora`` only for ``joint`` (absent: full fine-tuning); ``end_to_end`` only for
    ``refiner`` (the action expert is trained through the refiner as well)."""

    name: str = "action"
    epochs: int = 1
    max_steps: int | None = None  # cap on optimizer steps in this stage
    lr: float | None = None  # overrides optim.lr
    lora: LoraSection | None = None
    end_to_end: bool = False


@dataclass
class RefinerSection:
    """Flow-matching action refiner (training/refiner.py). Built when a ``refiner`` stage exists."""

    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    steps: int = 4
    noise_std: float = 0.25
    coord_scale: float = 10.0


@dataclass
class LogSection:
    every_steps: int = 10
    tensorboard: bool = True
    progress: bool = True


@dataclass
class CheckpointSection:
    every_steps: int = 0  # 0: only at the end of every epoch
    keep_last: int = 2


@dataclass
class TrainConfig:
    """The whole training run."""

    output_dir: str = "runs/train"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (DDP uses cuda:LOCAL_RANK)
    # torch intra-op threads (None: torch's default). Small models on a shared 2-core CPU train far faster with
    # 1 (measured on a busy 2-core machine: 0.17 s vs 3.7 s per tiny-demo step; idle barriers spin).
    num_threads: int | None = None
    precision: str = "fp32"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    stages: list[StageSection] = field(default_factory=lambda: [StageSection()])
    refiner: RefinerSection = field(default_factory=RefinerSection)
    log: LogSection = field(default_factory=LogSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> TrainConfig:
        """Build and validate; ``source`` (a file name) prefixes error messages."""
        try:
            cfg = _build(cls, data, "")
            cfg.validate()
        except TrainConfigError as exc:
            raise TrainConfigError(f"{source}: {exc}" if source else str(exc)) from None
        return cfg

    @classmethod
    def load_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise TrainConfigError(f"{path}: training config not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise TrainConfigError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Cross-field and range checks; raise TrainConfigError naming the field."""
        _choice("precision", self.precision, PRECISIONS)
        _choice("data.format", self.data.format, FORMATS)
        _choice("optim.schedule", self.optim.schedule, SCHEDULES)
        m = self.model
        sources = [n for n in ("preset", "config", "init_from") if getattr(m, n)]
        if len(sources) != 1:
            raise TrainConfigError(f"model: set exactly one of preset / config / init_from, got {sources or 'none'}")
        if m.init_from and m.overrides:
            raise TrainConfigError("model.overrides: not allowed with model.init_from (the checkpoint fixes the shape)")
        if not self.data.train:
            raise TrainConfigError("data.train: at least one dataset directory is required")
        if self.num_threads is not None:
            _positive("num_threads", self.num_threads)
        _positive("data.batch_size", self.data.batch_size)
        _positive("optim.grad_accum", self.optim.grad_accum)
        _positive("optim.lr", self.optim.lr)
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise TrainConfigError(f"data.val_fraction: expected a value in [0, 1), got {self.data.val_fraction}")
        if len(self.optim.betas) != 2:
            raise TrainConfigError(f"optim.betas: expected two numbers, got {self.optim.betas}")
        if not self.stages:
            raise TrainConfigError("stages: at least one stage is required")
        for i, st in enumerate(self.stages):
            where = f"stages[{i}]"
            _choice(f"{where}.name", st.name, STAGES)
            _positive(f"{where}.epochs", st.epochs)
            if st.lora is not None and st.name != "joint":
                raise TrainConfigError(f"{where}.lora: LoRA applies to the 'joint' stage only (this is {st.name!r})")
            if st.end_to_end and st.name != "refiner":
                raise TrainConfigError(f"{where}.end_to_end: only meaningful for the 'refiner' stage")
            if st.lora is not None:
                _positive(f"{where}.lora.rank", st.lora.rank)
        if self.loss.vqa > 0 and not self.data.vqa:
            raise TrainConfigError("loss.vqa: > 0 needs data.vqa: true (the Q/A pairs must be loaded)")
        r = self.refiner
        if r.d_model % r.num_heads:
            raise TrainConfigError(f"refiner.d_model ({r.d_model}) must be a multiple of num_heads ({r.num_heads})")
        _positive("refiner.steps", r.steps)

    @property
    def has_refiner(self) -> bool:
        return any(s.name == "refiner" for s in self.stages)


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise TrainConfigError(f"{name}: expected one of {list(allowed)}, got {value!r}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise TrainConfigError(f"{name}: must be > 0, got {value}")


# ---------------------------------------------------------------------------------------------------------------
# dict -> dataclass with field-path errors
# ---------------------------------------------------------------------------------------------------------------


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise TrainConfigError(f"{path or '(top level)'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise TrainConfigError(f"{path or '(top level)'}: unknown field(s) {unknown}; expected some of {names}")
    prefix = f"{path}." if path else ""
    return cls(**{k: _coerce(hints[k], v, f"{prefix}{k}") for k, v in data.items()})


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise TrainConfigError(f"{path}: must not be null")
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise TrainConfigError(f"{path}: expected a list, got {type(value).__name__} ({value!r})")
        item = args[0] if args else Any
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    base = origin or hint
    if base in (int, float, str, bool, dict, list):
        if not isinstance(value, base) or (base in (int, float) and isinstance(value, bool)):
            raise TrainConfigError(f"{path}: expected {base.__name__}, got {type(value).__name__} ({value!r})")
    return value
