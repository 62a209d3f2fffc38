"""BEV encoder: RegNet layouts and timm naming, GPT fusion maths, fusion wiring, ImageNet normalisation in bf16."""

from __future__ import annotations

import math

import pytest
import torch

from automot.model.released.bev_config import BEVConfig, load_bev_config
from automot.model.released.bev_encoder import BEVEncoder, GPTFusion, normalize_imagenet
from automot.model.released.regnet import RegNetFeatures, RegNetSpec
from automot.model.released.synthetic import tiny_bev_config


def test_regnet_layouts_from_design_rule():
    y032 = RegNetSpec.from_name("regnety_032")
    # stage widths: docs/released-agent.md §3
    assert y032.widths == (72, 216, 576, 1512) and y032.depths == (2, 5, 13, 1)
    assert y032.group_sizes == (24, 24, 24, 24) and y032.se_ratio == 0.25
    y002 = RegNetSpec.from_name("regnety_002")
    assert y002.widths == (24, 56, 152, 368) and y002.depths == (1, 1, 4, 7)
    with pytest.raises(ValueError, match="not a supported RegNet"):
        RegNetSpec.from_name("resnet34")


def test_regnet_parameter_names_are_timms():
    with torch.device("meta"):
        net = RegNetFeatures(RegNetSpec.from_name("regnety_032"), in_chans=1)
    shapes = {n: tuple(t.shape) for n, t in net.state_dict().items()}
    assert shapes["stem.conv.weight"] == (32, 1, 3, 3)
    assert shapes["s1.b1.conv2.conv.weight"] == (72, 24, 3, 3)  # grouped 3x3, group width 24
    assert shapes["s1.b1.se.fc1.weight"] == (8, 72, 1, 1)  # SE width = 0.25 x block input channels (32)
    assert shapes["s1.b1.downsample.conv.weight"] == (72, 32, 1, 1)
    assert "s1.b2.downsample.conv.weight" not in shapes  # identity shortcut inside a stage
    assert shapes["s3.b13.conv3.bn.running_var"] == (576,)
    assert "s4.b2.conv1.conv.weight" not in shapes and "head.fc.weight" not in shapes  # features_only: no head


def test_native_encoder_equals_timm_encoder_when_timm_imports():
    # timm is no dependency (the native encoder replaces it) and needs a torchvision that loads with this torch.
    pytest.importorskip("timm", reason="optional: timm (and the torchvision it needs) cannot be imported")
    torch.manual_seed(0)
    ours, theirs = BEVEncoder(tiny_bev_config()).eval(), BEVEncoder(tiny_bev_config(), backend="timm").eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())  # released names come from timm
    theirs.load_state_dict(ours.state_dict())
    image, lidar = torch.rand(1, 3, 64, 128) * 255, torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(image, lidar), theirs(image, lidar))


def _ln(x, w, b):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5) * w + b


def test_gpt_fusion_matches_handwritten_reference():
    cfg = BEVConfig(
        img_vert_anchors=2,
        img_horz_anchors=3,
        lidar_vert_anchors=2,
        lidar_horz_anchors=2,
        n_layer=2,
        n_head=2,
        block_exp=2,
    )
    torch.manual_seed(0)
    gpt = GPTFusion(8, cfg).double()
    with torch.no_grad():
        for p in gpt.parameters():
            p.normal_(0, 0.3)
    img, lid = torch.randn(1, 8, 2, 3, dtype=torch.float64), torch.randn(1, 8, 2, 2, dtype=torch.float64)
    w = {n: p.detach() for n, p in gpt.named_parameters()}
    # tokens: image cells row-major, then LiDAR cells row-major
    x = torch.cat([img[0].reshape(8, -1).T, lid[0].reshape(8, -1).T]) + w["pos_emb"][0]
    for j in range(2):
        p = f"blocks.{j}."
        h = _ln(x, w[p + "ln1.weight"], w[p + "ln1.bias"])
        q, k, v = (h @ w[p + f"attn.{n}.weight"].T + w[p + f"attn.{n}.bias"] for n in ("query", "key", "value"))
        heads = []
        for hd in range(2):
            s = slice(4 * hd, 4 * hd + 4)
            att = torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(4), dim=-1)
            heads.append(att @ v[:, s])
        x = x + torch.cat(heads, -1) @ w[p + "attn.proj.weight"].T + w[p + "attn.proj.bias"]
        h = _ln(x, w[p + "ln2.weight"], w[p + "ln2.bias"])
        x = (
            x
            + torch.relu(h @ w[p + "mlp.0.weight"].T + w[p + "mlp.0.bias"]) @ w[p + "mlp.2.weight"].T
            + w[p + "mlp.2.bias"]
        )
    x = _ln(x, w["ln_f.weight"], w["ln_f.bias"])
    with torch.no_grad():
        out_img, out_lid = gpt(img, lid)
    assert torch.allclose(out_img[0], x[:6].T.reshape(8, 2, 3), atol=1e-10)
    assert torch.allclose(out_lid[0], x[6:].T.reshape(8, 2, 2), atol=1e-10)


def test_encoder_output_is_lidar_branch_after_fusion():
    torch.manual_seed(0)
    enc = BEVEncoder(tiny_bev_config()).eval()
    image, lidar = torch.rand(1, 3, 64, 128) * 255, torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        out = enc(image, lidar)
        assert out.shape == (1, 368, 2, 2) and enc.out_channels == 368
        assert not torch.allclose(out, enc(image.flip(-1), lidar))  # fusion: the camera reaches the LiDAR branch
        enc.c5_conv.weight.add_(1.0)  # top-down path is kept only so weights load; it must not change the output
        assert torch.equal(out, enc(image, lidar))
    tokens = BEVEncoder.scene_tokens(out)
    assert tokens.shape == (1, 4, 368) and torch.equal(tokens[0, 1], out[0, :, 0, 1])  # row-major cells


def test_imagenet_normalisation_rounds_like_the_release():
    x = torch.arange(256, dtype=torch.float32).repeat(3, 1).reshape(1, 3, 16, 16).bfloat16()
    ours = normalize_imagenet(x)
    ref = torch.stack(
        [((x[:, c] / 255.0) - m) / s for c, (m, s) in enumerate([(0.485, 0.229), (0.456, 0.224), (0.406, 0.225)])], 1
    )
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, ref)
    mean = torch.tensor([0.485, 0.456, 0.406]).bfloat16().view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).bfloat16().view(1, 3, 1, 1)
    assert not torch.equal(ours, ((x / 255.0) - mean) / std)  # bf16 constants would round differently


def test_defaults_are_tfpp_values():
    cfg = load_bev_config(None)
    assert (cfg.img_vert_anchors, cfg.img_horz_anchors, cfg.lidar_vert_anchors, cfg.lidar_horz_anchors) == (
        12,
        32,
        8,
        8,
    )
    assert (cfg.n_layer, cfg.n_head, cfg.block_exp, cfg.lidar_in_channels) == (2, 4, 4, 1)
    assert (cfg.cropped_height, cfg.cropped_width, cfg.hist_max_per_pixel, cfg.lidar_split_height) == (
        384,
        1024,
        5.0,
        0.2,
    )
    assert cfg.from_file == frozenset()
