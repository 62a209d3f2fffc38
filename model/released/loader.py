"""Load the released AutoMoT checkpoint into our modules (directly, or via ``convert`` to our checkpoint format).

The model is built on the meta device (no memory, no random init), materialised empty in the target dtype and
filled tensor by tensor from the safetensors files; non-persistent buffers are then recomputed (rotary inv_freq in
exact fp32, as the released loader keeps it). Names go through model/released_names.py; ``bev_encoder.*`` tensors
fill the BEV encoder (model/released/bev_encoder.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from automot.fsio import StagedFiles, check_output_not_inside
from automot.model.automot import AutoMoTModel
from automot.model.config import AutoMoTConfig, ConfigError
from automot.model.factory import attach_processors, resolve_dtype
from automot.model.masks import action_group_ids
from automot.model.released.bev_config import BEVConfig, load_bev_config
from automot.model.released.bev_encoder import BEVEncoder
from automot.model.released.checkpoint import (
    EMBED,
    TIED_HEAD,
    TensorInfo,
    is_float_dtype,
    is_optional,
    iter_tensors,
    match_manifest,
    read_index,
    resolve_weight_files,
    write_safetensors_streaming,
)
from automot.model.released.hf_config import (
    ReleasedFolder,
    check_bev_against_preset,
    read_released_folder,
    released_model_config,
)
from automot.model.released.numerics import keep_rotary_fp32
from automot.model.released_names import to_released_name
from automot.model.rope import mrope_axis_map
from automot.model.understanding import PretrainedLoadError

BEV_PREFIX = "bev_encoder."
BEV_WEIGHTS = "bev_encoder.safetensors"
BEV_CONFIG = "bev_config.json"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
    "added_tokens.json", "chat_template.json", "chat_template.jinja", "preprocessor_config.json",
)  # fmt: skip


@dataclass
class ReleasedParts:
    """What the released checkpoint adds to an AutoMoTModel (a plain attribute: not a registered submodule, so
    ``model.to(...)`` does not move ``bev_encoder``; move it yourself)."""

    bev_encoder: BEVEncoder
    bev_config: BEVConfig
    source: str
    warnings: list[str] = field(default_factory=list)


def _meta_model(cfg: AutoMoTConfig) -> AutoMoTModel:
    with torch.device("meta"):
        model = AutoMoTModel(cfg).eval()
    # The released decision text is the raw per-position argmax (parity); vocabulary decoding only when configured.
    model.constrain_decisions = False
    return model


def _meta_bev(bev_cfg: BEVConfig) -> BEVEncoder:
    with torch.device("meta"):
        return BEVEncoder(bev_cfg).eval()


def expected_released_tensors(cfg: AutoMoTConfig, bev_cfg: BEVConfig) -> dict[str, tuple[int, ...]]:
    """Released name -> shape of every tensor the loader reads (incl. optional ones), from meta-built modules."""
    model, bev = _meta_model(cfg), _meta_bev(bev_cfg)
    out = {to_released_name(n): tuple(t.shape) for n, t in model.state_dict(keep_vars=True).items()}
    out.update({BEV_PREFIX + n: tuple(t.shape) for n, t in bev.state_dict(keep_vars=True).items()})
    return out


def _released_to_ours(model: AutoMoTModel) -> dict[str, str]:
    return {to_released_name(n): n for n in model.state_dict(keep_vars=True)}


def _restore_buffers(model: nn.Module) -> None:
    """Recompute non-persistent buffers after ``to_empty`` (their memory is uninitialised); unknown ones are errors."""
    persistent = set(model.state_dict(keep_vars=True))
    restored = set(keep_rotary_fp32(model))
    if isinstance(model, AutoMoTModel):
        t = model.config.tokens
        groups = action_group_ids(t.num_scene_tokens, t.num_decision_tokens, t.num_route_points, t.num_waypoints)
        model.action_groups.copy_(groups)
        ue = model.understanding
        text = ue.vlm.config.text_config
        rope = text.rope_parameters
        half = ue.layout.head_dim // 2
        section = list(rope.get("mrope_section") or [half, 0, 0])
        interleaved = bool(rope.get("mrope_interleaved", ue.cfg.family == "qwen3_vl"))
        ue.rope_axis_map.copy_(mrope_axis_map(half, section, interleaved))
        restored |= {"action_groups", "understanding.rope_axis_map"}
    unknown = [n for n, _ in model.named_buffers() if n not in persistent and n not in restored]
    if unknown:
        raise RuntimeError(f"non-persistent buffers with no known recipe after meta materialisation: {unknown}")


def _materialize(module: nn.Module, device: torch.device | str, dtype: torch.dtype) -> nn.Module:
    module = module.to(dtype).to_empty(device=device)
    _restore_buffers(module)
    return module.eval()


def _retie(model: AutoMoTModel) -> None:
    vlm = model.understanding.vlm
    embed = model.understanding.language_model.embed_tokens
    if vlm.lm_head.weight is not embed.weight:
        vlm.lm_head.weight = embed.weight


def _get(index: dict[str, TensorInfo], name: str) -> torch.Tensor:
    return next(iter(iter_tensors(index, [name])))[1]


def _check_tie(index: dict[str, TensorInfo]) -> None:
    """A stored LM head must equal the embedding: the released model ties them (docs/released-checkpoint.md §1.1)."""
    if TIED_HEAD in index and not torch.equal(_get(index, TIED_HEAD), _get(index, EMBED)):
        raise PretrainedLoadError(f"{TIED_HEAD} differs from {EMBED}, but the released model ties them")


def _fill(targets: dict[str, torch.Tensor], index: dict[str, TensorInfo], names_ours: dict[str, str]) -> None:
    """Copy file tensors (keys of ``names_ours``) into ``targets`` (by our names), one tensor at a time."""
    with torch.no_grad():
        for released, tensor in iter_tensors(index, [n for n in names_ours if n != TIED_HEAD]):
            target = targets[names_ours[released]]
            target.copy_(tensor.to(device=target.device, dtype=target.dtype))
    _check_tie(index)


def _check_tokenizer(folder: Path, cfg: AutoMoTConfig):
    """Before any weight is read: the tokenizer files exist and map the special tokens to config.json's ids.

    Returns the loaded tokenizer (None when the config uses the builtin one)."""
    if cfg.tokenizer != "pretrained":
        return None
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
        raise PretrainedLoadError(
            f"{folder}: no tokenizer files (expected tokenizer.json, or vocab.json + merges.txt, as shipped with "
            "the released checkpoint)"
        )
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise PretrainedLoadError(f"{folder}: the tokenizer files do not load ({type(exc).__name__}: {exc})") from exc
    _check_token_ids(tok, cfg, str(folder))
    return tok


def _check_token_ids(tok, cfg: AutoMoTConfig, where: str) -> None:
    ids = cfg.understanding.token_ids
    pairs = {
        "image_token_id": "<|image_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }
    wrong = [
        f"{key}={ids[key]} but the tokenizer maps {tok_str} to {tok.convert_tokens_to_ids(tok_str)}"
        for key, tok_str in pairs.items()
        if key in ids and tok.convert_tokens_to_ids(tok_str) != ids[key]
    ]
    if wrong:
        raise ConfigError(f"{where}: tokenizer and config.json disagree: " + "; ".join(wrong))


def _prepare(
    path: str | Path, preset: str | AutoMoTConfig, ema: bool, allow_config_mismatch: bool
) -> tuple[ReleasedFolder, AutoMoTConfig, dict[str, TensorInfo], list[str], Any]:
    """Read and check everything (configs, file headers, names, shapes) before any weight is materialised."""
    folder = read_released_folder(path)
    cfg, warnings = released_model_config(folder, preset, strict=not allow_config_mismatch)
    files = resolve_weight_files(folder.path, ema)
    index = read_index(files)
    bev_meta = _meta_bev(folder.bev)
    bev_diffs = check_bev_against_preset(cfg, folder.bev, bev_meta.out_channels)
    if bev_diffs and not allow_config_mismatch:
        raise ConfigError(f"{folder.path}: BEV encoder and model tokens disagree:\n  " + "\n  ".join(bev_diffs))
    expected = expected_released_tensors(cfg, folder.bev)
    match_manifest(index, expected, ", ".join(f.name for f in files))
    tokenizer = _check_tokenizer(folder.path, cfg)
    return folder, cfg, index, warnings + bev_diffs, tokenizer


def load_released(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.bfloat16,
    preset: str | AutoMoTConfig = "automot-4b",
    ema: bool = False,
    allow_config_mismatch: bool = False,
) -> AutoMoTModel:
    """A ready AutoMoTModel from the released folder, with tokenizer, image processor and ``model.released``."""
    dtype = _float_dtype(dtype)
    folder, cfg, index, warnings, tokenizer = _prepare(path, preset, ema, allow_config_mismatch)
    model = _materialize(_meta_model(cfg), device, dtype)
    _retie(model)
    bev = _materialize(_meta_bev(folder.bev), device, dtype)
    ours = _released_to_ours(model)
    model_names = {n: ours[n] for n in index if not n.startswith(BEV_PREFIX)}
    _fill(model.state_dict(keep_vars=True), index, model_names)
    bev_names = {n: n[len(BEV_PREFIX) :] for n in index if n.startswith(BEV_PREFIX)}
    _fill(bev.state_dict(keep_vars=True), index, bev_names)
    _zero_missing_counters(bev, {v for v in bev_names.values()})
    _retie(model)
    attach_processors(model, str(folder.path), tokenizer=tokenizer)
    model.released = ReleasedParts(bev, folder.bev, str(folder.path), warnings)
    return model


def _float_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    resolved = resolve_dtype(dtype) or torch.bfloat16
    if not resolved.is_floating_point:
        raise ConfigError(f"dtype: expected a float dtype (bfloat16, float16, float32), got {resolved}")
    return resolved


def _zero_missing_counters(bev: nn.Module, loaded: set[str]) -> None:
    with torch.no_grad():
        for name, buf in bev.state_dict(keep_vars=True).items():
            if name not in loaded and is_optional(name):
                buf.zero_()


def convert_released(
    path: str | Path,
    out_dir: str | Path,
    dtype: torch.dtype | str = torch.bfloat16,
    preset: str | AutoMoTConfig = "automot-4b",
    ema: bool = False,
    allow_config_mismatch: bool = False,
) -> Path:
    """Released folder -> our checkpoint format (model.io layout + bev_encoder.safetensors + bev_config.json).

    Streams tensor by tensor: peak memory is one tensor, not the 13 GB checkpoint.
    """
    dtype = _float_dtype(dtype)
    out = Path(out_dir)
    check_output_not_inside(path, out)  # never write over (or inside) the checkpoint being read
    folder, cfg, index, warnings, _ = _prepare(path, preset, ema, allow_config_mismatch)
    meta = _meta_model(cfg)
    ours = _released_to_ours(meta)
    shapes = {n: tuple(t.shape) for n, t in meta.state_dict(keep_vars=True).items()}
    _check_tie(index)
    model_entries = [
        (ours[n], shapes[ours[n]], dtype if is_float_dtype(index[n].dtype) else torch.int64)
        for n in index
        if not n.startswith(BEV_PREFIX) and n != TIED_HEAD
    ]
    reverse = {v: k for k, v in ours.items()}
    bev_entries = [
        (n[len(BEV_PREFIX) :], index[n].shape, dtype if is_float_dtype(index[n].dtype) else torch.int64)
        for n in index
        if n.startswith(BEV_PREFIX)
    ]
    provenance = {
        "source": str(folder.path),
        "ema": ema,
        "dtype": str(dtype),
        "warnings": warnings,
        "files": sorted({i.file.name for i in index.values()}),
    }
    # Every file is written under a temporary name first and all are renamed at the end: a failure or a kill
    # while the (multi-GB) weights are written leaves an earlier conversion in ``out`` as it was.
    with StagedFiles(out) as stage:
        _write(
            stage.path("model.safetensors"),
            model_entries,
            index,
            lambda n: reverse[n],
            {"format": "pt", "automot_config": cfg.name},
        )
        _write(stage.path(BEV_WEIGHTS), bev_entries, index, lambda n: BEV_PREFIX + n, {"format": "pt"})
        stage.write_text("config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        stage.write_text(BEV_CONFIG, json.dumps(folder.bev.to_json(), indent=2))
        for name in TOKENIZER_FILES:
            if (folder.path / name).is_file():
                shutil.copyfile(folder.path / name, stage.path(name))
        stage.write_json("released_conversion.json", provenance)
    return out


def _write(path: Path, entries, index, to_released, metadata) -> None:
    dtypes = {n: d for n, _, d in entries}
    write_safetensors_streaming(
        path, entries, lambda n: _get(index, to_released(n)).to(dtypes[n]), metadata, atomic=False
    )


def load_converted(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None
) -> AutoMoTModel:
    """Load a ``convert`` output (our format) with the BEV encoder attached; rotary inv_freq stays fp32."""
    path = Path(path)
    cfg = AutoMoTConfig.load_yaml(path / "config.yaml")
    index = read_index([path / "model.safetensors"])
    dtype = resolve_dtype(dtype) or _file_dtype(index)
    meta = _meta_model(cfg)
    expected = {n: tuple(t.shape) for n, t in meta.state_dict(keep_vars=True).items()}
    expected_released = {to_released_name(n): s for n, s in expected.items()}
    renamed = {to_released_name(n): info for n, info in index.items() if n in expected}
    unknown = [n for n in index if n not in expected]
    if unknown:
        raise PretrainedLoadError(f"{path / 'model.safetensors'}: unexpected tensors {unknown[:10]}")
    match_manifest(renamed, expected_released, str(path / "model.safetensors"))
    model = _materialize(meta, device, dtype)
    _retie(model)
    _fill(model.state_dict(keep_vars=True), index, {n: n for n in index})
    _retie(model)
    bev_cfg = load_bev_config(path / BEV_CONFIG)
    bev_index = read_index([path / BEV_WEIGHTS])
    bev = _materialize(_meta_bev(bev_cfg), device, dtype)
    bev_expected = {n: tuple(t.shape) for n, t in bev.state_dict(keep_vars=True).items()}
    match_manifest(bev_index, bev_expected, str(path / BEV_WEIGHTS))
    _fill(bev.state_dict(keep_vars=True), bev_index, {n: n for n in bev_index})
    _zero_missing_counters(bev, set(bev_index))
    attach_processors(model, str(path))
    model.released = ReleasedParts(bev, bev_cfg, str(path))
    return model


def _file_dtype(index) -> torch.dtype:
    return torch.bfloat16 if any(i.dtype == "BF16" for i in index.values()) else torch.float32
