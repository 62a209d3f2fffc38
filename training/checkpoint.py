"""Training checkpoints: a loadable model directory plus everything needed for an exact resume.

    RUN/checkpoints/step_0000120/
      model.safetensors, config.yaml (+ processor files)   model.io.save_pretrained (LoRA merged in)
      train_config.yaml                                     the TrainConfig of the run
      refiner.safetensors, refiner.yaml                     when the run has a refiner
      adapter.safetensors                                   during a LoRA stage: unmerged base + adapters
      trainer_state.pt                                      progress, optimizer, scheduler, grad scaler
      rng_rank{R}.pt                                        per-rank python / numpy / torch (/ CUDA) RNG states
      val_metrics.json                                      the validation history so far

Directories are written under a temporary name and renamed, so a crash never leaves a half checkpoint that
``latest_checkpoint`` would pick up.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from automot.fsio import TMP_SUFFIX, atomic_path, atomic_write_text
from automot.model.io import save_pretrained
from automot.model.refiner import ActionRefiner, save_refiner
from automot.training.config import TrainConfig
from automot.training.lora import ADAPTER_FILE, has_lora, lora_state, merged_lora

TRAINER_STATE = "trainer_state.pt"
TRAIN_CONFIG = "train_config.yaml"
VAL_METRICS = "val_metrics.json"
_PREFIX = "step_"


@dataclass
class Progress:
    """Where training stands: stage index, epoch within the stage, optimizer steps done in that epoch."""

    stage: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    stage_step: int = 0
    global_step: int = 0


def capture_rng() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(_tuples(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    # torch.load(weights_only) gives python's RNG state back with lists where tuples were.
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_model_dir(out: Path, model: torch.nn.Module, refiner: ActionRefiner | None, cfg: TrainConfig) -> None:
    """The inference-loadable part: model (LoRA merged), refiner and the training config beside them."""
    with merged_lora(model):
        save_pretrained(model, out)
    if refiner is not None:
        save_refiner(refiner, out)
    cfg.save_yaml(out / TRAIN_CONFIG)


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    refiner: ActionRefiner | None,
    cfg: TrainConfig,
    progress: Progress,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler,
    val_history: list[dict],
) -> Path:
    """Rank 0 writes the checkpoint for ``progress.global_step`` (with its own RNG state); other ranks add
    theirs with ``save_rng`` afterwards. Returns the checkpoint directory."""
    from safetensors.torch import save_file

    final = run_dir / "checkpoints" / f"{_PREFIX}{progress.global_step:07d}"
    # Written into a hidden ``.step_N.tmp`` folder (never listed by ``checkpoints``) and renamed when complete.
    tmp = final.with_name(f".{final.name}{TMP_SUFFIX}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model_dir(tmp, model, refiner, cfg)
    if has_lora(model):
        with atomic_path(tmp / ADAPTER_FILE) as path:
            save_file(lora_state(model), str(path))
    with atomic_path(tmp / TRAINER_STATE) as path:
        torch.save(
            {
                "progress": asdict(progress),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
            },
            path,
        )
    atomic_write_text(tmp / VAL_METRICS, json.dumps(val_history, indent=2))
    save_rng(tmp, 0)
    if final.exists():  # the same step again (a resumed run): keep the old one until the new one is in place
        old = final.with_name(f".{final.name}.old{TMP_SUFFIX}")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    return final


def save_rng(ckpt: Path, rank: int) -> None:
    """Every rank stores its own RNG streams (they differ by the rank offset of the seed)."""
    with atomic_path(ckpt / f"rng_rank{rank}.pt") as path:
        torch.save(capture_rng(), path)


def load_trainer_state(ckpt: Path) -> dict:
    path = ckpt / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (not a training checkpoint; model-only dirs cannot be resumed)")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_rng(ckpt: Path, rank: int) -> None:
    path = ckpt / f"rng_rank{rank}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing RNG state for rank {rank} (resume with the same world size)")
    restore_rng(torch.load(path, map_location="cpu", weights_only=True))


def checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(_PREFIX) and (p / TRAINER_STATE).is_file()]
    return sorted(done, key=lambda p: int(p.name[len(_PREFIX) :].split(".")[0]))


def resolve_resume(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its latest checkpoint)."""
    path = Path(path)
    if (path / TRAINER_STATE).is_file():
        return path
    found = checkpoints(path)
    if not found:
        raise FileNotFoundError(f"--resume {path}: neither a checkpoint ({TRAINER_STATE}) nor a run with checkpoints")
    return found[-1]


def prune(run_dir: Path, keep_last: int) -> None:
    for old in checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
