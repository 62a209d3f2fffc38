"""The released camera+LiDAR BEV encoder (TransFuser++-style backbone), output = LiDAR branch after fusion 4.

Structure and names follow docs/released-checkpoint.md §1.3, docs/released-agent.md §3 and the released BEV encoder:
two RegNet branches (``image_encoder`` 3 ch, ``lidar_encoder`` 1 ch), after each of the 4 stages a GPT fusion
(``transformers.{i}``: ``pos_emb``, ``blocks.{j}.{ln1,ln2,attn.{key,query,value,proj},mlp.{0,2}}``, ``ln_f``)
between avg-pooled maps (LiDAR 1x1-conv'd to image channels and back: ``lidar_channel_to_img``,
``img_channel_to_lidar``), results bilinearly upsampled and added. The top-down
``c5_conv``/``up_conv5``/``up_conv4`` exist only so the weights load. Note: the released GPT block MLP uses ReLU
(the original minGPT's is GELU; the released ``bev_encoder.py`` replaced it with ReLU), and attention is plain SDPA
with scale 1/sqrt(head_dim).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from automot.model.released.bev_config import BEVConfig
from automot.model.released.regnet import make_branch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"GPT fusion: width {dim} is not divisible by n_head={heads}")
        self.key = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, c // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-LN transformer block; the MLP is Linear -> ReLU -> Linear (indices 0 and 2 hold weights)."""

    def __init__(self, dim: int, heads: int, expansion: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, expansion * dim), nn.ReLU(), nn.Linear(expansion * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPTFusion(nn.Module):
    """Joint attention over image anchors then LiDAR anchors (row-major tokens) with a learned position embedding."""

    def __init__(self, dim: int, cfg: BEVConfig) -> None:
        super().__init__()
        self.n_img = cfg.img_vert_anchors * cfg.img_horz_anchors
        n_lidar = cfg.lidar_vert_anchors * cfg.lidar_horz_anchors
        self.pos_emb = nn.Parameter(torch.zeros(1, self.n_img + n_lidar, dim))
        self.blocks = nn.Sequential(*[Block(dim, cfg.n_head, cfg.block_exp) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, lidar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, hi, wi = image.shape
        hl, wl = lidar.shape[2:]
        tokens = torch.cat(
            [image.permute(0, 2, 3, 1).reshape(b, -1, c), lidar.permute(0, 2, 3, 1).reshape(b, -1, c)], 1
        )
        x = self.ln_f(self.blocks(self.pos_emb + tokens))
        img = x[:, : self.n_img].reshape(b, hi, wi, c).permute(0, 3, 1, 2)
        lid = x[:, self.n_img :].reshape(b, hl, wl, c).permute(0, 3, 1, 2)
        return img, lid


def normalize_imagenet(x: torch.Tensor) -> torch.Tensor:
    """Per channel ((x / 255) - mean) / std in x's dtype (bf16 in the released agent:
    docs/released-checkpoint.md §6.1 item 7).

    Python-float constants on purpose: a bf16 tensor op with a Python scalar computes in fp32 and rounds once,
    whereas a bf16 mean/std tensor would first round 0.485 etc. to bf16 (a different result).
    """
    channels = [((x[:, c] / 255.0) - m) / s for c, (m, s) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD))]
    return torch.stack(channels, dim=1)


class BEVEncoder(nn.Module):
    """Camera (B,3,H,W, values 0..255) + LiDAR histogram (B,C,256,256) -> BEV feature (B, C4, 8, 8)."""

    def __init__(self, cfg: BEVConfig, backend: str = "native") -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.image_encoder = make_branch(cfg.image_architecture, 3, backend)
        self.lidar_encoder = make_branch(cfg.lidar_architecture, cfg.lidar_in_channels, backend)
        img_ch, lid_ch = self.image_encoder.channels, self.lidar_encoder.channels
        self.avgpool_img = nn.AdaptiveAvgPool2d((cfg.img_vert_anchors, cfg.img_horz_anchors))
        self.avgpool_lidar = nn.AdaptiveAvgPool2d((cfg.lidar_vert_anchors, cfg.lidar_horz_anchors))
        self.transformers = nn.ModuleList([GPTFusion(c, cfg) for c in img_ch])
        self.lidar_channel_to_img = nn.ModuleList([nn.Conv2d(lc, ic, 1) for lc, ic in zip(lid_ch, img_ch)])
        self.img_channel_to_lidar = nn.ModuleList([nn.Conv2d(ic, lc, 1) for lc, ic in zip(lid_ch, img_ch)])
        if not cfg.transformer_decoder_join and cfg.add_features:
            self.lidar_to_img_features_end = nn.Linear(lid_ch[3], img_ch[3])
        if cfg.has_top_down:
            ch = cfg.bev_features_chanels
            self.up_conv5 = nn.Conv2d(ch, ch, 3, padding=1)
            self.up_conv4 = nn.Conv2d(ch, ch, 3, padding=1)
            self.c5_conv = nn.Conv2d(lid_ch[3], ch, 1)

    @property
    def out_channels(self) -> int:
        return self.lidar_encoder.channels[3]

    def _fuse(self, i: int, image: torch.Tensor, lidar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img_t, lid_t = self.transformers[i](
            self.avgpool_img(image), self.lidar_channel_to_img[i](self.avgpool_lidar(lidar))
        )
        lid_t = self.img_channel_to_lidar[i](lid_t)
        img_t = F.interpolate(img_t, size=image.shape[2:], mode="bilinear", align_corners=False)
        lid_t = F.interpolate(lid_t, size=lidar.shape[2:], mode="bilinear", align_corners=False)
        return image + img_t, lidar + lid_t

    def forward(self, image: torch.Tensor, lidar: torch.Tensor) -> torch.Tensor:
        dtype = self.lidar_channel_to_img[0].weight.dtype
        image, lidar = image.to(dtype), lidar.to(dtype)  # released: inputs cast to the (bf16) weights' dtype first
        if self.cfg.normalize_imagenet:
            image = normalize_imagenet(image)
        image, lidar = self.image_encoder.stem(image), self.lidar_encoder.stem(lidar)
        for i, (img_stage, lid_stage) in enumerate(zip(self.image_encoder.stages(), self.lidar_encoder.stages())):
            image, lidar = self._fuse(i, img_stage(image), lid_stage(lidar))
        return lidar

    @staticmethod
    def scene_tokens(feature: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H*W, C), row-major over (H, W) as the released gen pass flattens it
        (docs/released-checkpoint.md §3.4)."""
        return feature.flatten(2).transpose(1, 2)
