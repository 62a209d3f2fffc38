"""Typed training configuration (``automot train --config CONFIG.yaml``), loaded from YAML.

Loading goes through ``automot.config``: every problem is reported in one ``automot.errors.ConfigError`` whose
lines start with the dotted field path (``stages[1].lora.rank: expected int, got '8' (str)``), so a bad YAML is
fixed from one message.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from automot import config as typed_config
from automot.errors import ConfigError

__all__ = ["ConfigError", "TrainConfig", "STAGES", "FORMATS", "PRECISIONS", "SCHEDULES"]

StageName = Literal["action", "joint", "refiner"]
DataFormat = Literal["automot", "bench2drive", "pdm_lite"]
Precision = Literal["fp32", "bf16", "fp16"]
Schedule = Literal["cosine", "constant"]
STAGES = typing.get_args(StageName)
FORMATS = typing.get_args(DataFormat)
PRECISIONS = typing.get_args(Precision)
SCHEDULES = typing.get_args(Schedule)


@dataclass
class ModelSection:
    """Where the model comes from: exactly one of ``preset``, ``config`` (a model YAML) or ``init_from``."""

    preset: str | None = "tiny"
    config: str | None = None
    init_from: str | None = None  # a checkpoint directory written by save_pretrained (weights are loaded)
    # the released layout: an `automot convert --from-automot` folder (weights + frozen BEV encoder, which computes
    # BEV tokens online for samples without precomputed features; training/released.py)
    checkpoint: str | None = None
    overrides: dict = field(default_factory=dict)  # deep-merged into the preset/config dict (not init_from)


@dataclass
class DataSection:
    """Datasets (lists of roots) and loader settings. ``val`` empty: ``val_fraction`` of the episodes, evenly
    spread over the sorted episode list (training/data/__init__.py: split_episodes)."""

    format: DataFormat = "automot"
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    camera: str | None = None  # None: the dataset's first camera (automot) / the format's front camera
    frame_rate_hz: float | None = None  # real layouts: recording rate (None: the reader's default)
    sample_list: str | None = None  # pdm_lite: an AutoMoT sample-list jsonl restricting the frames
    val_sample_list: str | None = None  # pdm_lite: the validation jsonl (pdm_lite_2hz_2tp_val_bev_encoder.jsonl)
    pdm_route_path: bool = True  # pdm_lite: supervise the path with the expert's planned `route` (released model)
    batch_size: int = 4
    num_workers: int = 0
    vqa: bool = False  # load scene Q/A pairs (needed when loss.vqa > 0)
    doctor: bool = True  # run `automot data doctor`'s fast checks on every dataset folder at start-up
    doctor_max_errors: int = 0  # errors tolerated by that check before `automot train` exits 4


@dataclass
class OptimSection:
    """AdamW + warmup/cosine schedule; ``grad_accum`` micro-batches per optimizer step."""

    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_steps: int = 20
    schedule: Schedule = "cosine"
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
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class StageSection:
    """One training stage. ``lora`` only for ``joint`` (absent: full fine-tuning); ``end_to_end`` only for
    ``refiner`` (the action expert is trained through the refiner as well)."""

    name: StageName = "action"
    epochs: int = 1
    max_steps: int | None = None  # cap on optimizer steps in this stage
    lr: float | None = None  # overrides optim.lr
    lora: LoraSection | None = None
    end_to_end: bool = False


@dataclass
class RefinerSection:
    """Flow-matching action refiner (model/refiner.py). Built when a ``refiner`` stage exists."""

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
class FSDPSection:
    """Fully sharded data parallel (training/fsdp.py): FSDP2 units per MoT layer / vision block, sharded
    checkpoints (torch.distributed.checkpoint) that resume on another number of ranks. ``precision: bf16`` becomes
    the FSDP mixed-precision policy (bf16 compute, fp32 sharded parameters and gradient reduction)."""

    enabled: bool = False
    activation_checkpointing: bool = True


@dataclass
class TrainConfig:
    """The whole training run."""

    output_dir: str = "runs/train"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (DDP uses cuda:LOCAL_RANK)
    # torch intra-op threads (None: torch's default). Small models on a shared 2-core CPU train far faster with
    # 1 (measured on a busy 2-core machine: 0.17 s vs 3.7 s per tiny-demo step; idle barriers spin).
    num_threads: int | None = None
    precision: Precision = "fp32"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    stages: list[StageSection] = field(default_factory=lambda: [StageSection()])
    refiner: RefinerSection = field(default_factory=RefinerSection)
    log: LogSection = field(default_factory=LogSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    fsdp: FSDPSection = field(default_factory=FSDPSection)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return typed_config.to_dict(self)

    def save_yaml(self, path: str | Path) -> Path:
        return typed_config.save_yaml(self, path)

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> TrainConfig:
        """Build and validate; ``source`` (a file name) prefixes error messages."""
        cfg = typed_config.from_dict(cls, data, source=source or "")
        typed_config.raise_problems(source or "", cfg.problems())
        return cfg

    @classmethod
    def load_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(typed_config.read_yaml_mapping(path, "training config"), source=str(path))

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Cross-field and range checks; raise one ConfigError listing every problem by its field path."""
        typed_config.raise_problems("", self.problems())

    def problems(self) -> list[str]:
        """Cross-field and range problems (the types were checked on loading), each starting with its field path."""
        out: list[str] = []

        def choice(name: str, value: Any, allowed: tuple) -> None:
            if value not in allowed:
                out.append(f"{name}: expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")

        def positive(name: str, value: float) -> None:
            if not value > 0:
                out.append(f"{name}: must be > 0, got {value}")

        choice("precision", self.precision, PRECISIONS)
        choice("data.format", self.data.format, FORMATS)
        choice("optim.schedule", self.optim.schedule, SCHEDULES)
        m = self.model
        # With ``checkpoint`` the preset only names the layout ``--dry-run`` plans for (the checkpoint's own
        # config.yaml is what training builds).
        sources = [n for n in ("preset", "config", "init_from", "checkpoint") if getattr(m, n)]
        if m.checkpoint and "preset" in sources:
            sources.remove("preset")
        if len(sources) != 1:
            out.append(f"model: set exactly one of preset / config / init_from / checkpoint, got {sources or 'none'}")
        if (m.init_from or m.checkpoint) and m.overrides:
            out.append(
                "model.overrides: not allowed with model.init_from / checkpoint (the checkpoint fixes the shape)"
            )
        if not self.data.train:
            out.append("data.train: at least one dataset directory is required")
        if self.num_threads is not None:
            positive("num_threads", self.num_threads)
        positive("data.batch_size", self.data.batch_size)
        if self.data.doctor_max_errors < 0:
            out.append(f"data.doctor_max_errors: must be >= 0, got {self.data.doctor_max_errors}")
        positive("optim.grad_accum", self.optim.grad_accum)
        positive("optim.lr", self.optim.lr)
        if not 0.0 <= self.data.val_fraction < 1.0:
            out.append(f"data.val_fraction: expected a value in [0, 1), got {self.data.val_fraction}")
        if len(self.optim.betas) != 2:
            out.append(f"optim.betas: expected two numbers, got {self.optim.betas}")
        if not self.stages:
            out.append("stages: at least one stage is required")
        for i, st in enumerate(self.stages):
            where = f"stages[{i}]"
            choice(f"{where}.name", st.name, STAGES)
            positive(f"{where}.epochs", st.epochs)
            if st.lora is not None and st.name != "joint":
                out.append(f"{where}.lora: LoRA applies to the 'joint' stage only (this is {st.name!r})")
            if st.end_to_end and st.name != "refiner":
                out.append(f"{where}.end_to_end: only meaningful for the 'refiner' stage")
            if st.lora is not None:
                positive(f"{where}.lora.rank", st.lora.rank)
        if self.loss.vqa > 0 and not self.data.vqa:
            out.append("loss.vqa: > 0 needs data.vqa: true (the Q/A pairs must be loaded)")
        if self.fsdp.enabled:
            if self.precision == "fp16":
                out.append("fsdp.enabled: precision fp16 is not supported with FSDP (use bf16 or fp32)")
            if self.has_refiner:
                out.append("fsdp.enabled: the refiner stage is not supported with FSDP")
            if any(st.lora is not None for st in self.stages):
                out.append("fsdp.enabled: LoRA stages are not supported with FSDP")
            if self.loss.vqa > 0:
                out.append("fsdp.enabled: loss.vqa is not supported with FSDP")
        r = self.refiner
        positive("refiner.num_heads", r.num_heads)
        if r.num_heads > 0 and r.d_model % r.num_heads:
            out.append(f"refiner.d_model: must be a multiple of refiner.num_heads ({r.num_heads}), got {r.d_model}")
        positive("refiner.steps", r.steps)
        return out

    @property
    def has_refiner(self) -> bool:
        return any(s.name == "refiner" for s in self.stages)
