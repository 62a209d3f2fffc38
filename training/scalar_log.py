"""Scalar logging: always a ``scalars.jsonl`` (one JSON object per logged step), plus TensorBoard event files
when the ``tensorboard`` package is installed and enabled."""

from __future__ import annotations

import json
import warnings
from pathlib import Path


class ScalarLogger:
    """Rank-0 logger; a disabled logger (other DDP ranks) ignores every call."""

    def __init__(self, log_dir: str | Path, tensorboard: bool = True, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tb = None
        self._jsonl = None
        if not enabled:
            return
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(log_dir / "scalars.jsonl", "a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(log_dir / "tensorboard"))
            except ImportError:
                warnings.warn("tensorboard is not installed: logging to scalars.jsonl only", stacklevel=2)

    def log(self, step: int, values: dict[str, float], tag: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "tag": tag, **{k: float(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{tag}/{k}", float(v), int(step))

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
