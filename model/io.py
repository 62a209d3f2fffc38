"""Saving and loading whole AutoMoT models: ``model.safetensors`` + ``config.yaml`` (+ processor files).

Loading is by exact name and exact shape; anything missing, unexpected or mis-shaped is a hard error that names
the tensor (the released loader only printed such problems).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from automot.fsio import StagedFiles
from automot.model.automot import AutoMoTModel
from automot.model.config import AutoMoTConfig
from automot.model.factory import attach_processors, resolve_dtype
from automot.model.rope import keep_rotary_fp32
from automot.model.understanding import PretrainedLoadError

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
_TIED_HEAD = "understanding.vlm.lm_head.weight"


def _is_tied(model: AutoMoTModel) -> bool:
    ue = model.understanding
    return ue.lm_head.weight.data_ptr() == ue.language_model.embed_tokens.weight.data_ptr()


def save_pretrained(model: AutoMoTModel, out_dir: str | Path) -> Path:
    """Write weights, the config YAML (next to the weights, as the training config too) and processor files."""
    out = Path(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if _is_tied(model):
        state.pop(_TIED_HEAD, None)
    cfg = dataclasses.replace(
        model.config, understanding=dataclasses.replace(model.config.understanding, pretrained_path=None)
    )
    # Every file goes to a hidden staging folder first and all are moved into ``out`` at the end (automot.fsio):
    # a failure or a kill while the weights are written leaves an earlier checkpoint in ``out`` as it was.
    with StagedFiles(out) as stage:
        save_file(state, str(stage.path(WEIGHTS)), metadata={"format": "pt", "automot_config": model.config.name})
        cfg.save_yaml(stage.path(CONFIG))  # automot.config.save_yaml, into the staging folder
        if model.tokenizer is not None and model.config.tokenizer != "builtin":
            model.tokenizer.save_pretrained(str(stage.staging_dir))
        if model.image_processor is not None:
            model.image_processor.save_pretrained(str(stage.staging_dir))
    return out


def load_state_strict(model: AutoMoTModel, weights: str | Path) -> None:
    """Load a safetensors file into ``model``; every name and shape must match exactly."""
    weights = Path(weights)
    expected = model.state_dict()
    try:
        handle = safe_open(str(weights), framework="pt")
        names = list(handle.keys())
        shapes = {n: tuple(handle.get_slice(n).get_shape()) for n in names}
    except Exception as exc:  # safetensors raises its own error types for a bad header / truncated file
        raise PretrainedLoadError(f"{weights}: not a valid safetensors file ({_reason(exc)})") from exc
    with handle as f:
        tied = _is_tied(model)
        missing = [k for k in expected if k not in shapes and not (tied and k == _TIED_HEAD)]
        unexpected = [k for k in names if k not in expected]
        mismatched = [
            f"{k}: expected {tuple(expected[k].shape)}, got {shapes[k]}"
            for k in names
            if k in expected and tuple(expected[k].shape) != shapes[k]
        ]
        problems = []
        if missing:
            problems.append(f"missing tensors ({len(missing)}): {missing[:10]}")
        if unexpected:
            problems.append(f"unexpected tensors ({len(unexpected)}): {unexpected[:10]}")
        if mismatched:
            problems.append(f"shape mismatch ({len(mismatched)}): {mismatched[:10]}")
        if problems:
            raise PretrainedLoadError(f"{weights}: " + "; ".join(problems))
        with torch.no_grad():
            for name in names:
                target = expected[name]
                try:
                    tensor = f.get_tensor(name)
                except Exception as exc:  # a file cut short after its header fails only here
                    raise PretrainedLoadError(
                        f"{weights}: cannot read tensor {name!r} ({_reason(exc)}); the file is truncated or corrupt"
                    ) from exc
                target.copy_(tensor.to(target.dtype))


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_pretrained(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    refiner: bool = False,
) -> AutoMoTModel:
    """Load a directory written by ``save_pretrained``; ``refiner=True`` also attaches its saved refiner."""
    path = Path(path)
    if not path.is_dir():
        raise PretrainedLoadError(f"checkpoint directory not found: {path}")
    for name in (CONFIG, WEIGHTS):
        if not (path / name).is_file():
            raise PretrainedLoadError(f"{path / name}: missing (a checkpoint directory has {CONFIG} and {WEIGHTS})")
    cfg = AutoMoTConfig.load_yaml(path / CONFIG)
    cfg.understanding.pretrained_path = None
    model = AutoMoTModel(cfg)
    load_state_strict(model, path / WEIGHTS)
    dtype = resolve_dtype(dtype)
    if dtype is not None:
        model = model.to(dtype)
        keep_rotary_fp32(model)  # RoPE frequencies stay fp32, as HF and the released loader keep them
    model = model.to(device).eval()
    attach_processors(model, str(path))
    if refiner:
        from automot.model.refiner import load_refiner

        model.attach_refiner(load_refiner(path, device=device))
    return model
