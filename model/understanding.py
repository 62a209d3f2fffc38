"""The understanding expert: a Hugging Face Qwen-VL model used through its own modules.

We reuse HF's vision tower, embeddings, decoder-layer weights, multimodal position rules (``get_rope_index``) and
LM head; only the layer loop is ours (model/mot.py), so prefix K/V come out as plain tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from automot.errors import UsageError
from automot.model.config import UnderstandingConfig
from automot.model.mot import HeadLayout
from automot.model.rope import mrope_axis_map
from automot.model.types import Observation

_ARCHITECTURES = {
    "qwen3_vl": ("Qwen3VLConfig", "Qwen3VLForConditionalGeneration"),
    "qwen2_5_vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"),
}


class PretrainedLoadError(UsageError, RuntimeError):
    """The local pretrained VLM directory is missing, of another architecture, or has mismatched tensors."""


@dataclass
class PrefixInputs:
    embeds: torch.Tensor  # [B, T, H]
    position_ids: torch.Tensor  # [3, B, T]
    valid: torch.Tensor  # [B, T] bool
    visual_mask: torch.Tensor | None  # [B, T] bool, image-token positions
    deepstack: list[torch.Tensor] | None  # per early layer: [n_visual_tokens, H]


def _hf_classes(family: str):
    import transformers

    cfg_name, model_name = _ARCHITECTURES[family]
    return getattr(transformers, cfg_name), getattr(transformers, model_name)


def build_hf_config(cfg: UnderstandingConfig):
    """HF config object from our UnderstandingConfig (token ids and tying at the top level as HF expects)."""
    config_cls, _ = _hf_classes(cfg.family)
    tie = bool(cfg.text.get("tie_word_embeddings", False))
    return config_cls(
        text_config=dict(cfg.text), vision_config=dict(cfg.vision), tie_word_embeddings=tie, **cfg.token_ids
    )


def load_pretrained_vlm(path: str | Path, family: str, dtype: torch.dtype | None = None) -> nn.Module:
    """Load a VLM from a local HF-format directory (never the hub), checking the architecture first."""
    path = Path(path)
    if not path.is_dir():
        raise PretrainedLoadError(f"understanding.pretrained_path: directory not found: {path}")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise PretrainedLoadError(f"{cfg_file}: missing (expected an HF-format model directory)")
    meta = json.loads(cfg_file.read_text())
    expected_type = {"qwen3_vl": "qwen3_vl", "qwen2_5_vl": "qwen2_5_vl"}[family]
    if meta.get("model_type") != expected_type:
        raise PretrainedLoadError(
            f"{cfg_file}: model_type is {meta.get('model_type')!r}, expected {expected_type!r} "
            f"(understanding.family={family!r}; architectures={meta.get('architectures')})"
        )
    _, model_cls = _hf_classes(family)
    try:
        model, info = model_cls.from_pretrained(str(path), local_files_only=True, dtype=dtype, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise PretrainedLoadError(f"{path}: could not load {model_cls.__name__}: {exc}") from exc
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "mismatched_keys", "unexpected_keys")}
    if problems.get("mismatched_keys") or problems.get("missing_keys"):
        raise PretrainedLoadError(f"{path}: tensors do not match {model_cls.__name__}: {problems}")
    return model


class UnderstandingExpert(nn.Module):
    """Wraps an HF Qwen-VL ``*ForConditionalGeneration``; exposes its layers and prefix embedding."""

    def __init__(self, cfg: UnderstandingConfig, vlm: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if vlm is None:
            _, model_cls = _hf_classes(cfg.family)
            vlm = model_cls(build_hf_config(cfg))
        self.vlm = vlm
        text = vlm.config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.layout = HeadLayout(text.num_attention_heads, text.num_key_value_heads, head_dim)
        rope = text.rope_parameters
        section = list(rope.get("mrope_section") or [head_dim // 2, 0, 0])
        interleaved = bool(rope.get("mrope_interleaved", cfg.family == "qwen3_vl"))
        self.register_buffer("rope_axis_map", mrope_axis_map(head_dim // 2, section, interleaved), persistent=False)

    # Views into the HF model (names follow transformers 5.x Qwen-VL classes).
    @property
    def language_model(self) -> nn.Module:
        return self.vlm.model.language_model

    @property
    def layers(self) -> nn.ModuleList:
        return self.language_model.layers

    @property
    def norm(self) -> nn.Module:
        return self.language_model.norm

    @property
    def lm_head(self) -> nn.Module:
        return self.vlm.lm_head

    @property
    def inv_freq(self) -> torch.Tensor:
        return self.language_model.rotary_emb.inv_freq

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.embed_tokens(ids)

    def embed_prefix(self, obs: Observation) -> PrefixInputs:
        """Token + image embeddings, 3-axis positions and deepstack features, exactly as HF's forward builds them."""
        inner = self.vlm.model
        embeds = self.embed_tokens(obs.input_ids)
        valid = obs.attention_mask.bool()
        visual_mask, deepstack = None, None
        if obs.pixel_values is not None:
            if obs.image_grid_thw is None or obs.mm_token_type_ids is None:
                raise ValueError("Observation: pixel_values given without image_grid_thw / mm_token_type_ids")
            vis = inner.get_image_features(obs.pixel_values, obs.image_grid_thw, return_dict=True)
            image_embeds = torch.cat(list(vis.pooler_output), dim=0).to(embeds.dtype)
            visual_mask = obs.input_ids == inner.config.image_token_id
            n_tokens = int(visual_mask.sum())
            if n_tokens != image_embeds.shape[0]:
                raise ValueError(
                    f"Observation: {n_tokens} image tokens in input_ids but the images give {image_embeds.shape[0]} "
                    "features (check image_grid_thw and the number of image pads per image)"
                )
            embeds = embeds.masked_scatter(visual_mask[..., None], image_embeds)
            feats = getattr(vis, "deepstack_features", None)
            if feats:
                deepstack = [torch.cat(list(f), dim=0).to(embeds.dtype) for f in feats]
            position_ids, _ = inner.get_rope_index(
                obs.input_ids,
                mm_token_type_ids=obs.mm_token_type_ids,
                image_grid_thw=obs.image_grid_thw,
                attention_mask=obs.attention_mask,
            )
        else:
            pos = (obs.attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            position_ids = pos[None].expand(3, -1, -1)
        return PrefixInputs(embeds, position_ids, valid, visual_mask, deepstack)
