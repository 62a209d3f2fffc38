"""Training the released layout: the checkpoint's frozen BEV encoder and the BEV tokens of every batch.

The released model's action branch starts with ``num_scene_tokens`` BEV tokens (64 x 1512 for the 4B release).
Each sample brings them precomputed (``route_features.pt``) or as the encoder's inputs (training/data/bev_features.py);
``SceneFiller`` computes the missing ones with ``runtime.scene.SceneEncoderRunner`` -- the object the agent's
runtime encodes ``DrivingState.scene_inputs`` with when it drives with ``automot_released.yaml`` -- so a frame's
tokens in training are the tokens the agent computes for it at inference, and they enter the model through the
same ``ActionState.scene`` -> ``action_io.embed`` path. The encoder is frozen (eval mode, no gradients, not part of
the model's parameters or checkpoints), as in the released recipe's online fallback
(OscarHuangWind/AutoMoT @ 278fa5a, docs/TRAINING.md: "initializes a frozen BEV encoder").
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from automot.errors import UsageError
from automot.model.released.bev_encoder import BEVEncoder
from automot.model.types import ActionState
from automot.training.data.bev_features import BEVSource
from automot.training.data.torch_dataset import TrainBatch

BEV_PREFIX = "bev_encoder."
CONVERTED_WEIGHTS = "bev_encoder.safetensors"  # `automot convert` output (names without the prefix)
BEV_CONFIG = "bev_config.json"


class NoBEVEncoderError(UsageError):
    """The checkpoint folder holds no BEV encoder (no ``bev_encoder.*`` tensors)."""


def _weight_files(folder: Path) -> tuple[list[Path], str]:
    """(files, prefix): ``bev_encoder.safetensors`` of a converted folder, else the released model shards."""
    if (folder / CONVERTED_WEIGHTS).is_file():
        return [folder / CONVERTED_WEIGHTS], ""
    files = sorted(folder.glob("model*.safetensors"))
    return files, BEV_PREFIX


def load_bev_encoder(folder: str | Path, device: str | torch.device = "cpu") -> BEVEncoder:
    """The frozen BEV encoder of a converted (``automot convert``) or released AutoMoT folder, in the dtype the
    weights are stored in (the agent runs it in the model's dtype, bf16 for the release). NoBEVEncoderError (one
    line) when the folder has no ``bev_encoder.*`` tensors or no ``bev_config.json``."""
    from safetensors import safe_open

    from automot.model.released.bev_config import load_bev_config

    folder = Path(folder)
    if not folder.is_dir():
        raise NoBEVEncoderError(f"{folder}: checkpoint folder not found")
    files, prefix = _weight_files(folder)
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    if name.startswith(prefix):
                        tensors[name[len(prefix) :]] = f.get_tensor(name)
        except Exception as exc:  # safetensors raises its own error type for bad headers
            raise NoBEVEncoderError(f"{path}: not a readable safetensors file ({type(exc).__name__})") from None
    if not tensors:
        raise NoBEVEncoderError(
            f"{folder}: no bev_encoder.* tensors (neither {CONVERTED_WEIGHTS} nor bev_encoder.* in model*.safetensors): "
            "not a released or converted AutoMoT checkpoint"
        )
    if not (folder / BEV_CONFIG).is_file():
        raise NoBEVEncoderError(f"{folder}: {BEV_CONFIG} missing (the BEV encoder's configuration)")
    cfg = load_bev_config(folder / BEV_CONFIG)
    dtype = next(t.dtype for t in tensors.values() if t.is_floating_point())
    encoder = BEVEncoder(cfg).to(dtype)
    missing, unexpected = encoder.load_state_dict(tensors, strict=False)
    # BatchNorm step counters are not stored by every exporter and are never read in eval mode.
    missing = [n for n in missing if not n.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise NoBEVEncoderError(
            f"{folder}: BEV encoder tensors do not match bev_config.json (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    encoder.requires_grad_(False)
    return encoder.to(device).eval()


def feature_shape(model) -> tuple[int, int, int] | None:
    """(C, H, W) of the BEV features the model takes (a square grid of ``num_scene_tokens`` cells), or None."""
    t = model.config.tokens
    side = int(round(t.num_scene_tokens**0.5))
    if not t.num_scene_tokens or side * side != t.num_scene_tokens:
        return None
    return (int(t.scene_dim), side, side)


class SceneFiller:
    """Computes the BEV tokens of a batch's online rows with the frozen encoder (the agent's runner)."""

    def __init__(self, encoder: BEVEncoder, model, device: torch.device) -> None:
        from automot.runtime.scene import SceneEncoderRunner

        t = model.config.tokens
        dtype = next(encoder.parameters()).dtype
        self.encoder = encoder
        self.runner = SceneEncoderRunner(encoder, encoder.cfg, t.num_scene_tokens, t.scene_dim, device, dtype)
        self.shape = (int(t.num_scene_tokens), int(t.scene_dim))
        self.device = device

    def tokens(self, rgb: torch.Tensor, lidar: torch.Tensor) -> torch.Tensor:
        """float32 (N, C) tokens of one sample's inputs, exactly as the runtime encodes ``scene_inputs``."""
        out, _ = self.runner({"rgb": rgb.cpu().numpy(), "lidar": lidar.cpu().numpy()})
        return out[0].clone()  # a normal tensor: the runner's inference-mode output cannot enter autograd

    def fill(self, batch: TrainBatch) -> TrainBatch:
        online = batch.scene_inputs
        if online is None:
            return batch
        s = batch.state
        b = int(s.target_points.shape[0])
        scene = s.scene.clone() if s.scene is not None else torch.zeros(b, *self.shape, device=self.device)
        for j, row in enumerate(online.rows):
            scene[row] = self.tokens(online.rgb[j], online.lidar[j]).to(scene.device)
        return replace(batch, state=ActionState(s.target_points, s.speed, scene), scene_inputs=None)


def bev_setup(model, encoder_dir: str | Path | None, device: torch.device) -> tuple[BEVSource, SceneFiller | None]:
    """For a model with BEV tokens: the data-side source (precomputed features, else online inputs when an encoder
    exists) and the filler; without ``encoder_dir`` only precomputed features can serve samples."""
    encoder = load_bev_encoder(encoder_dir, device) if encoder_dir else None
    source = BEVSource(encoder.cfg if encoder is not None else None, feature_shape(model))
    return source, SceneFiller(encoder, model, device) if encoder is not None else None
