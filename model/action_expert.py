"""The action expert (AE): a per-layer twin of the LM layer, plus its token encoders and output heads.

Parameter names mirror the understanding layer (``self_attn.q_proj`` ...) so one layer routine serves both
experts (model/mot.py); model/released_names.py maps them to the released ``*_mot_gen`` names.
"""

from __future__ import annotations

import torch
from torch import nn

from automot.model.config import ActionExpertConfig, AutoMoTConfig


class RMSNorm(nn.Module):
    """Qwen-style RMSNorm: statistics in fp32, cast back, then scale."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(dtype)


class ActionAttention(nn.Module):
    def __init__(self, cfg: ActionExpertConfig) -> None:
        super().__init__()
        h, d = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(h, cfg.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, cfg.num_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, cfg.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * d, h, bias=False)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps)


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class ActionExpertLayer(nn.Module):
    """Same attribute layout as an HF Qwen decoder layer, with the AE's own sizes."""

    def __init__(self, cfg: ActionExpertConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = ActionAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)


def _mlp(dims: list[int], act: type[nn.Module], last_bias: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=last_bias or not last))
        if not last:
            layers.append(act())
    return nn.Sequential(*layers)


class Projector(nn.Module):
    """Learned query -> hidden: fc1, tanh-GELU, fc2 (released `*_projector`)."""

    def __init__(self, query_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(query_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x), approximate="tanh"))


class PointEncoder(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.mlp = _mlp(dims, nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class PointHead(nn.Module):
    """Per-query MLP to 2-D deltas. ``query`` exists in the released checkpoint but is unused at inference."""

    def __init__(self, hidden: int, widths: list[int], num_queries: int) -> None:
        super().__init__()
        self.mlp = _mlp([hidden, *widths, 2], nn.SiLU, last_bias=False)
        self.query = nn.Parameter(torch.zeros(1, num_queries, hidden))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(h)


class ActionIO(nn.Module):
    """Token encoders (scene, target points, speed, learned queries) and output heads of the action expert."""

    def __init__(self, cfg: AutoMoTConfig) -> None:
        super().__init__()
        t, h = cfg.tokens, cfg.action.hidden_size
        self.reasoning_queries = nn.Embedding(t.num_decision_tokens, t.query_dim)
        self.route_queries = nn.Embedding(t.num_route_points, t.query_dim)
        self.waypoint_queries = nn.Embedding(t.num_waypoints, t.query_dim)
        self.reasoning_projector = Projector(t.query_dim, h)
        self.route_projector = Projector(t.query_dim, h)
        self.waypoint_projector = Projector(t.query_dim, h)
        self.bev_encoder_proj = nn.Linear(t.scene_dim, h) if t.num_scene_tokens else None
        self.target_point_encoder = PointEncoder([2, *t.encoder_widths, h])
        self.velocity_encoder = _mlp([1, *t.encoder_widths, h], nn.ReLU)
        self.route_head = PointHead(h, t.head_widths, t.num_route_points)
        self.waypoints_head = PointHead(h, t.head_widths, t.num_waypoints)
        # Released auxiliary speed head (training only); kept so released checkpoints load strictly.
        self.velocity_head = nn.Sequential(nn.Linear(h, h), nn.LeakyReLU(0.1), nn.Linear(h, 3))
        # Only when the AE is narrower than the UE: map decision states into the LM head's width.
        self.decision_out_proj = nn.Linear(h, cfg.hidden_size, bias=False) if h != cfg.hidden_size else None

    def embed(
        self, target_points: torch.Tensor, speed: torch.Tensor, scene: torch.Tensor | None, dtype: torch.dtype
    ) -> torch.Tensor:
        """[B, N_action, H_ae] input embeddings in packed order."""
        b = target_points.shape[0]
        parts = []
        if self.bev_encoder_proj is not None:
            if scene is None:
                raise ValueError("this model has scene tokens: ActionState.scene must be given")
            parts.append(self.bev_encoder_proj(scene.to(dtype)))
        parts.append(self.target_point_encoder(target_points.to(dtype)))
        parts.append(self.velocity_encoder(speed.to(dtype).reshape(b, 1, 1)))
        for queries, proj in (
            (self.reasoning_queries, self.reasoning_projector),
            (self.route_queries, self.route_projector),
            (self.waypoint_queries, self.waypoint_projector),
        ):
            parts.append(proj(queries.weight.to(dtype))[None].expand(b, -1, -1))
        return torch.cat(parts, dim=1)
