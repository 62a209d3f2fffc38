"""Tensors exchanged with the model: prefix observation, per-tick action state, KV snapshot, action output."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class Observation:
    """Understanding-expert input (what an HF Qwen-VL processor returns), batch-first.

    pixel_values are already patchified ([N_patches, C*T*P*P]); image_grid_thw is [n_images, 3].
    mm_token_type_ids marks image tokens (1) / video tokens (2); HF needs it for multimodal positions.
    """

    input_ids: torch.Tensor  # [B, T] int64
    attention_mask: torch.Tensor  # [B, T], 1 = real token (batches are left-padded)
    pixel_values: torch.Tensor | None = None  # [N_patches, C*T*P*P]
    image_grid_thw: torch.Tensor | None = None  # [n_images, 3]
    mm_token_type_ids: torch.Tensor | None = None  # [B, T]

    def to(self, device: torch.device | str) -> Observation:
        return Observation(**{k: (v.to(device) if v is not None else None) for k, v in vars(self).items()})


@dataclass
class ActionState:
    """Fast-path input: target points [B, 2, 2] and speed [B, 1] (ego frame, SI units), optional scene [B, N, D]."""

    target_points: torch.Tensor  # [B, 2, 2] ego frame (x forward, y right), metres
    speed: torch.Tensor  # [B, 1] m/s
    scene: torch.Tensor | None = None  # [B, N_scene, D_scene] scene tokens (BEV features), when the model has them


@dataclass
class ActionOutput:
    path: torch.Tensor  # [B, n_route, 2]
    waypoints: torch.Tensor  # [B, n_waypoints, 2]
    decision_logits: torch.Tensor  # [B, n_decision, vocab]
    decision_text: list[str]
    hidden: torch.Tensor | None = None  # [B, N_action, H_ae] final (normed) action-token states, for refiners


@dataclass(frozen=True)
class KVSnapshot:
    """Per-layer prefix K/V as plain tensors — never a mutable HF cache.

    keys/values: [L, B, Hkv, S, D] (post-norm, post-RoPE keys). pad_mask: [B, S], True where a real prefix token
    sits (left padding of a batch and capacity padding are False). next_position: [B], the first action position
    (max prefix position + 1). The fast path only reads these tensors.
    """

    keys: torch.Tensor  # [L, B, Hkv, S, D]
    values: torch.Tensor  # [L, B, Hkv, S, D]
    pad_mask: torch.Tensor  # [B, S] bool
    next_position: torch.Tensor  # [B] int64
    reasoning_text: list[str] | None = None  # B strings when the snapshot came from ``reason``

    @property
    def length(self) -> int:
        return int(self.keys.shape[3])

    def padded(self, capacity: int) -> KVSnapshot:
        """Copy padded on the sequence axis to a fixed capacity (zeros, pad_mask False)."""
        s = self.length
        if capacity < s:
            raise ValueError(f"KVSnapshot.padded: capacity {capacity} is below the prefix length {s}")
        extra = capacity - s
        pad_kv = (0, 0, 0, extra)
        return dataclasses.replace(
            self,
            keys=torch.nn.functional.pad(self.keys, pad_kv),
            values=torch.nn.functional.pad(self.values, pad_kv),
            pad_mask=torch.nn.functional.pad(self.pad_mask, (0, extra), value=False),
        )
