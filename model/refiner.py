"""Diffusion action refiner (ours — the paper's refiner code is unreleased): conditional flow matching that
refines the action expert's trajectory given the action expert's own features.

Design
------
- **State**: the 20 path points and 6 waypoints as one set of P = 26 two-dimensional points, divided by
  ``coord_scale`` metres so values are O(1).
- **Source and target**: a flow from the action expert's prediction ``a`` to the ground truth ``x1``. The source
  sample is ``x0 = a + noise_std * eps`` (a noisy neighbourhood of the coarse prediction, so the field is learnt
  around it, not just on it); the straight-line interpolant ``x_t = (1 - t) x0 + t x1`` has the constant
  velocity ``x1 - x0``, regressed with MSE (rectified-flow / conditional flow matching objective).
- **Denoiser**: a small pre-norm transformer over the P point tokens. Each token embeds ``x_t``, the anchor
  ``a`` at that slot and a learned slot embedding; a sinusoidal time embedding is added to every token;
  every block has self-attention over the points, cross-attention to the action expert's final hidden states
  (``ActionOutput.hidden``, all action tokens, LayerNorm + linear to ``d_model``) and an MLP. The output layer
  is zero-initialised, so an untrained refiner is exactly the identity (a refiner stage can only start from
  the action expert's quality).
- **Inference**: ``steps`` Euler steps from ``t = 0`` to ``1`` starting at ``a`` (no noise by default:
  deterministic, the mode of the source distribution).
- **End to end**: ``sample`` is differentiable in ``a`` and in the conditioning, and training adds an L1 loss on
  the unrolled refined trajectory, so in an end-to-end stage gradients reach the action expert through both the
  anchor and its hidden states. The flow-matching term treats the anchor as given (detached source), which keeps
  the regression target well defined.

Saved next to a model checkpoint as ``refiner.safetensors`` + ``refiner.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from automot import config as typed_config
from automot.model.types import ActionOutput

WEIGHTS = "refiner.safetensors"
CONFIG = "refiner.yaml"


@dataclass
class RefinerConfig:
    cond_dim: int  # action-expert hidden size
    num_route_points: int = 20
    num_waypoints: int = 6
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    steps: int = 4
    noise_std: float = 0.25  # in scaled units (x coord_scale metres)
    coord_scale: float = 10.0

    @property
    def num_points(self) -> int:
        return self.num_route_points + self.num_waypoints

    def problems(self) -> list[str]:
        """Range problems, each starting with the field name."""
        out = [
            f"{name}: must be > 0, got {getattr(self, name)}"
            for name in ("cond_dim", "d_model", "num_heads", "steps", "coord_scale")
            if not getattr(self, name) > 0
        ]
        out += [
            f"{name}: must be >= 0, got {getattr(self, name)}"
            for name in ("num_route_points", "num_waypoints", "num_layers", "noise_std")
            if getattr(self, name) < 0
        ]
        if self.num_heads > 0 and self.d_model % self.num_heads:
            out.append(f"d_model: must be a multiple of num_heads ({self.num_heads}), got {self.d_model}")
        return out

    def validate(self, source: str = "refiner") -> None:
        typed_config.raise_problems(source, self.problems())


def _time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm3 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        h = self.norm2(x)
        x = x + self.cross_attn(h, cond, cond, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class ActionRefiner(nn.Module):
    """Velocity field v(x_t, t | anchor, action-expert states) and its Euler sampler."""

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        d = config.d_model
        self.point_in = nn.Linear(4, d)
        self.slot = nn.Embedding(config.num_points, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.cond_norm = nn.LayerNorm(config.cond_dim)
        self.cond_proj = nn.Linear(config.cond_dim, d)
        self.blocks = nn.ModuleList([_Block(d, config.num_heads) for _ in range(config.num_layers)])
        self.out_norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, 2)
        nn.init.zeros_(self.out.weight)  # identity refiner at initialisation
        nn.init.zeros_(self.out.bias)

    # ------------------------------------------------------------------ packing
    def pack(self, path: torch.Tensor, waypoints: torch.Tensor) -> torch.Tensor:
        return torch.cat([path, waypoints], dim=1).float() / self.config.coord_scale

    def unpack(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * self.config.coord_scale
        return x[:, : self.config.num_route_points], x[:, self.config.num_route_points :]

    # ------------------------------------------------------------------ field and sampler
    def velocity(self, x_t: torch.Tensor, anchor: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """[B, P, 2] velocity at scaled points ``x_t`` and times ``t`` [B]."""
        d = self.config.d_model
        tokens = self.point_in(torch.cat([x_t, anchor], dim=-1)) + self.slot.weight[None]
        tokens = tokens + self.time_mlp(_time_embedding(t, d))[:, None]
        cond = self.cond_proj(self.cond_norm(hidden.float()))
        for block in self.blocks:
            tokens = block(tokens, cond)
        return self.out(self.out_norm(tokens))

    def sample(
        self,
        path: torch.Tensor,
        waypoints: torch.Tensor,
        hidden: torch.Tensor,
        steps: int | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined (path, waypoints) in metres after ``steps`` Euler steps (differentiable)."""
        anchor = self.pack(path, waypoints)
        x = anchor if noise is None else anchor + self.config.noise_std * noise
        n = int(steps or self.config.steps)
        b = x.shape[0]
        for k in range(n):
            t = torch.full((b,), k / n, device=x.device)
            x = x + self.velocity(x, anchor, t, hidden) / n
        return self.unpack(x)

    def losses(
        self,
        path: torch.Tensor,
        waypoints: torch.Tensor,
        hidden: torch.Tensor,
        path_gt: torch.Tensor,
        waypoints_gt: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """``flow``: flow-matching MSE (scaled units); ``refined_l1``: L1 in metres of the unrolled sample."""
        anchor = self.pack(path, waypoints)
        target = self.pack(path_gt, waypoints_gt)
        source = anchor.detach() + self.config.noise_std * torch.randn_like(anchor)
        t = torch.rand(anchor.shape[0], device=anchor.device)
        x_t = (1.0 - t[:, None, None]) * source + t[:, None, None] * target
        flow = nn.functional.mse_loss(self.velocity(x_t, anchor.detach(), t, hidden), target - source)
        ref_path, ref_wps = self.sample(path, waypoints, hidden)
        refined = torch.cat([ref_path, ref_wps], dim=1)
        refined_l1 = (refined - torch.cat([path_gt, waypoints_gt], dim=1).float()).abs().mean()
        return {"flow": flow, "refined_l1": refined_l1}


def apply_refiner(output: ActionOutput, refiner: ActionRefiner, steps: int | None = None) -> ActionOutput:
    """Inference: the same ActionOutput with refined path and waypoints (decision and hidden unchanged)."""
    if output.hidden is None:
        raise ValueError("apply_refiner: ActionOutput.hidden is None (the refiner conditions on the AE states)")
    with torch.no_grad():
        path, waypoints = refiner.sample(output.path, output.waypoints, output.hidden, steps)
    return dataclasses.replace(output, path=path.to(output.path.dtype), waypoints=waypoints.to(output.waypoints.dtype))


def save_refiner(refiner: ActionRefiner, out_dir: str | Path) -> Path:
    from safetensors.torch import save_file

    from automot.fsio import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS) as tmp:  # written under a temporary name, renamed when complete
        save_file({k: v.detach().contiguous().cpu() for k, v in refiner.state_dict().items()}, str(tmp))
    typed_config.save_yaml(refiner.config, out / CONFIG)
    return out


def has_refiner(path: str | Path) -> bool:
    return (Path(path) / WEIGHTS).is_file() and (Path(path) / CONFIG).is_file()


def load_refiner_config(path: str | Path) -> RefinerConfig:
    """Read and check ``refiner.yaml``; raises ConfigError naming the file and every bad field."""
    config = typed_config.load_yaml(RefinerConfig, path, what="refiner config")
    config.validate(str(path))
    return config


def load_refiner(path: str | Path, device: str | torch.device = "cpu") -> ActionRefiner:
    """Load ``refiner.safetensors`` + ``refiner.yaml`` from a checkpoint directory (strict names and shapes)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not has_refiner(path):
        raise FileNotFoundError(f"{path}: no refiner ({WEIGHTS} + {CONFIG}) in this checkpoint")
    config = load_refiner_config(path / CONFIG)
    refiner = ActionRefiner(config)
    refiner.load_state_dict(load_file(str(path / WEIGHTS)), strict=True)
    return refiner.to(device).eval()
