"""Attention masks as boolean tensors (True = may attend).

Rules (docs/released-checkpoint.md §2.4):
- prefix (understanding) tokens are causal as in the VLM, optionally bidirectional inside an image block, and
  never see action tokens;
- action tokens see every valid prefix token; among themselves they follow the block-causal "cumsum" rule over
  the groups [scene][target points + speed][decision][route][waypoints]: bidirectional inside a group, and a
  group sees all earlier groups (decision sees state; planning sees decision).
"""

from __future__ import annotations

import torch

from automot.model.config import NUM_STATE_TOKENS


def prefix_mask(
    valid: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    vision_start_id: int | None = None,
    vision_end_id: int | None = None,
    image_bidirectional: bool = False,
) -> torch.Tensor:
    """[B, T, T] causal mask over valid tokens; each query also sees itself so padded rows stay finite."""
    b, t = valid.shape
    idx = torch.arange(t, device=valid.device)
    allowed = (idx[None, :] <= idx[:, None])[None] & valid[:, None, :]
    if image_bidirectional:
        if input_ids is None or vision_start_id is None or vision_end_id is None:
            raise ValueError("image_bidirectional prefix mask needs input_ids and vision start/end token ids")
        starts = (input_ids == vision_start_id).long().cumsum(-1)
        ends_before = (input_ids == vision_end_id).long().cumsum(-1) - (input_ids == vision_end_id).long()
        in_image = starts > ends_before  # from <vision_start> to <vision_end>, both included
        seg = torch.where(in_image, starts, torch.full_like(starts, -1))
        same_block = (seg[:, :, None] == seg[:, None, :]) & in_image[:, :, None] & in_image[:, None, :]
        allowed = allowed | (same_block & valid[:, None, :])
    return allowed | torch.eye(t, dtype=torch.bool, device=valid.device)[None]


def action_group_ids(num_scene: int, num_decision: int, num_route: int, num_waypoints: int) -> torch.Tensor:
    """Block index of every action token: scene 0, state 1 (NUM_STATE_TOKENS tokens), decision 2, route 3,
    waypoints 4."""
    sizes = [num_scene, NUM_STATE_TOKENS, num_decision, num_route, num_waypoints]
    return torch.cat([torch.full((n,), g, dtype=torch.long) for g, n in enumerate(sizes)])


def action_mask(group_ids: torch.Tensor) -> torch.Tensor:
    """[N, N] block-causal mask among action tokens."""
    return group_ids[None, :] <= group_ids[:, None]


def joint_action_rows(prefix_valid: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """[B, N, S + N]: action queries over (prefix keys, action keys)."""
    b = prefix_valid.shape[0]
    n = group_ids.shape[0]
    among = action_mask(group_ids.to(prefix_valid.device))
    return torch.cat([prefix_valid[:, None, :].expand(b, n, -1), among[None].expand(b, n, n)], dim=-1)
