"""A tiny model in the released layout, and a writer for released-format folders (tests, demos, CI without weights).

``tiny_released_config`` keeps the released *ratios* (docs/released-checkpoint.md §6.3): UE 8 q / 2 kv heads of
32 dims, action expert 4 q / 1 kv heads of hidden // heads = 16 dims (GQA group 4 on both sides), equal residual
widths (no extra projection), bidirectional image blocks, 4 scene tokens from a RegNetY-002 BEV encoder on small inputs.
``write_released_folder`` writes exactly what the release ships: ``model.safetensors`` with released names,
a Qwen3-VL ``config.json`` (transformers 4.57 style ``rope_scaling`` + ``rope_theta``), tokenizer files,
``preprocessor_config.json`` and a jsonpickle-style ``bev_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from automot.fsio import atomic_path, atomic_write_text
from automot.model.automot import AutoMoTModel
from automot.model.config import (
    ActionExpertConfig,
    AutoMoTConfig,
    PromptConfig,
    TokenLayoutConfig,
    UnderstandingConfig,
    _builtin_ids,
    _qwen3_text,
    _qwen3_vision,
)
from automot.model.released.bev_config import BEVConfig
from automot.model.released.bev_encoder import BEVEncoder
from automot.model.released_names import to_released_name


def tiny_bev_config() -> BEVConfig:
    """RegNetY-002 branches on a 128x64 crop and a 64x64 LiDAR grid (16 m square): 2x2 output cells, 368 channels."""
    return BEVConfig(
        image_architecture="regnety_002",
        lidar_architecture="regnety_002",
        img_vert_anchors=2,
        img_horz_anchors=4,
        lidar_vert_anchors=2,
        lidar_horz_anchors=2,
        n_layer=1,
        n_head=2,
        block_exp=2,
        bev_features_chanels=8,
        cropped_height=64,
        cropped_width=128,
        lidar_resolution_width=64,
        lidar_resolution_height=64,
        min_x=-8.0,
        max_x=8.0,
        min_y=-8.0,
        max_y=8.0,
    )


def tiny_released_config() -> AutoMoTConfig:
    """Released-layout ratios at test size (builtin tokenizer ids, vocab 384)."""
    text = _qwen3_text(
        vocab=384, hidden=128, inter=192, layers=2, heads=8, kv=2, head_dim=32, section=[6, 5, 5], theta=5e6
    )
    return AutoMoTConfig(
        name="tiny-released",
        understanding=UnderstandingConfig(
            text=text,
            vision=_qwen3_vision(depth=2, hidden=32, inter=64, heads=2, out=128, deepstack=[0, 1]),
            token_ids=_builtin_ids(),
            prefix_image_bidirectional=True,
        ),
        action=ActionExpertConfig(hidden_size=128, num_heads=4, num_kv_heads=1, head_dim=16, intermediate_size=96),
        tokens=TokenLayoutConfig(
            num_scene_tokens=4,
            scene_dim=368,
            query_dim=24,
            encoder_widths=[16, 32],
            head_widths=[32, 16],
            route_cumsum="xy",
        ),
        prompt=PromptConfig(num_frames=4, image_width=128, image_height=64),
        max_prefix_tokens=256,
        tokenizer="pretrained",
    )


def qwen3vl_config_json(cfg: AutoMoTConfig) -> dict:
    """A Qwen3-VL ``config.json`` as transformers 4.57 writes it (rope in ``rope_scaling`` + ``rope_theta``)."""
    text = {k: v for k, v in cfg.understanding.text.items() if k != "rope_parameters"}
    rope = dict(cfg.understanding.text["rope_parameters"])
    text["rope_theta"] = rope.pop("rope_theta")
    text["rope_scaling"] = rope
    text["model_type"] = "qwen3_vl_text"
    vision = {**cfg.understanding.vision, "model_type": "qwen3_vl", "in_channels": 3}
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl",
        "text_config": text,
        "vision_config": vision,
        "tie_word_embeddings": True,
        "transformers_version": "4.57.3",
        **cfg.understanding.token_ids,
    }


def jsonpickle_like(bev: BEVConfig) -> dict:
    """A bev_config.json shaped like the released jsonpickle dump (py/object markers, numpy wrappers, extras)."""
    data = {"py/object": "mot.modeling.bev_encoder.config.GlobalConfig", **bev.to_json()}
    data["lidar_pos"] = {"py/tuple": bev.lidar_pos}
    data["compute_min_time_to_cover_distance_params"] = {
        "py/object": "numpy.ndarray",
        "dtype": "float64",
        "values": [0.00904221, 0.00733342, -0.03744807, 0.0235038],
    }
    data["detailed_loss_weights"] = {"loss_wp": 1.0}
    return data


def write_released_folder(model: AutoMoTModel, bev: BEVEncoder, out_dir: str | Path, tied_head: bool = False) -> Path:
    """Write ``model`` + ``bev`` as a released-format folder (released names; LM head omitted unless ``tied_head``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        released = to_released_name(name)
        if released == "language_model.lm_head.weight" and not tied_head:
            continue
        tensors[released] = t.detach().contiguous().clone()
    for name, t in bev.state_dict().items():
        tensors["bev_encoder." + name] = t.detach().contiguous().clone()
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_text(out / "config.json", json.dumps(qwen3vl_config_json(model.config), indent=2))
    atomic_write_text(out / "bev_config.json", json.dumps(jsonpickle_like(bev.cfg)))
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(out))
    merge = int(model.config.understanding.vision.get("spatial_merge_size", 2))
    patch = int(model.config.understanding.vision.get("patch_size", 16))
    pre = {
        "size": {"longest_edge": 16777216, "shortest_edge": (patch * merge) ** 2},
        "patch_size": patch,
        "temporal_patch_size": int(model.config.understanding.vision.get("temporal_patch_size", 2)),
        "merge_size": merge,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "Qwen3VLProcessor",
        "image_processor_type": "Qwen2VLImageProcessorFast",
    }
    atomic_write_text(out / "preprocessor_config.json", json.dumps(pre, indent=2))
    return out


def build_tiny_released(seed: int = 0) -> tuple[AutoMoTModel, BEVEncoder]:
    """Random tiny model + BEV encoder in the released layout (fp32, eval), with the builtin tokenizer attached."""
    from automot.model.factory import build_model
    from automot.model.prompting import builtin_tokenizer, make_image_processor

    cfg = tiny_released_config()
    model = build_model(cfg, seed=seed)
    model.tokenizer = builtin_tokenizer()
    model.image_processor = make_image_processor(cfg)
    torch.manual_seed(seed + 1)
    bev = BEVEncoder(tiny_bev_config()).eval()
    with torch.no_grad():  # non-trivial BN statistics and position embeddings, so loading them matters
        for name, t in bev.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith("running_mean") or name.endswith("pos_emb"):
                t.copy_(torch.randn_like(t) * 0.1)
    return model, bev
