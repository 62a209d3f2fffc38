"""The scene encoder on the fast path: raw per-tick sensor tensors -> the action expert's scene tokens.

For the released checkpoint the encoder is the TransFuser++-style camera + LiDAR BEV encoder that the loaders hang
off ``model.released.bev_encoder`` (config ``model.released.bev_config``). Its (1, C, h, w) output is flattened
row-major over (h, w) into (1, h*w, C) scene tokens, as the released gen pass does.

Inputs (``DrivingState.scene_inputs``), batch dimension omitted:
  ``rgb``: (3, cropped_height, cropped_width) RGB values 0..255 (model/released/sensors.py ``camera_array``)
  ``lidar``: (C, lidar_resolution_height, lidar_resolution_width) histogram (``lidar_histogram``)
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import numpy as np
import torch

from automot.runtime.engines import OnnxSceneEngine, TensorRTSceneEngine, fast_stream

log = logging.getLogger(__name__)

SCENE_INPUT_KEYS = ("rgb", "lidar")


def scene_input_shapes(bev_config: Any) -> dict[str, tuple[int, ...]]:
    """Per-key input shapes (no batch dim) the encoder of ``bev_config`` takes: camera crop and LiDAR grid."""
    cfg = bev_config
    rows, cols = cfg.image_shape() if hasattr(cfg, "image_shape") else (cfg.cropped_height, cfg.cropped_width)
    return {
        "rgb": (3, int(rows), int(cols)),
        "lidar": (int(cfg.lidar_in_channels), int(cfg.lidar_resolution_height), int(cfg.lidar_resolution_width)),
    }


def attached_scene_encoder(model: torch.nn.Module) -> tuple[torch.nn.Module, Any] | None:
    """(encoder, bev_config) attached by ``load_released`` / ``load_converted``, or None."""
    parts = getattr(model, "released", None)
    encoder = getattr(parts, "bev_encoder", None)
    if encoder is None:
        return None
    return encoder, getattr(parts, "bev_config", None) or getattr(encoder, "cfg", None)


class SceneEncoderRunner:
    """Runs the BEV encoder once per tick in the model's device/dtype and returns float32 (1, N, D) tokens."""

    def __init__(
        self,
        encoder: torch.nn.Module,
        bev_config: Any,
        num_tokens: int,
        token_dim: int,
        device: torch.device,
        dtype: torch.dtype,
        stream: torch.cuda.Stream | None = None,
    ) -> None:
        self.config = bev_config
        enc_param = next(encoder.parameters())
        if enc_param.device != device or enc_param.dtype != dtype:
            # The loaders keep the encoder outside the model's module tree, so model.to(...) does not move it.
            log.info(
                "moving the scene encoder from %s/%s to the model's %s/%s",
                enc_param.device,
                enc_param.dtype,
                device,
                dtype,
            )
            encoder.to(device=device, dtype=dtype)
        self.encoder = encoder.eval()
        self.device, self.dtype = device, dtype
        self.stream = stream if stream is not None else fast_stream(device)
        cfg = bev_config
        self.input_shapes: dict[str, tuple[int, ...]] = scene_input_shapes(cfg)
        # The encoder downsamples the LiDAR grid by 32; checked here so a wrong bev_config fails at build time.
        grid = (cfg.lidar_resolution_height // 32) * (cfg.lidar_resolution_width // 32)
        channels = int(getattr(encoder, "out_channels", token_dim))
        if grid != num_tokens or channels != token_dim:
            raise ValueError(
                f"scene encoder gives {grid} tokens x {channels} channels (LiDAR grid "
                f"{cfg.lidar_resolution_height}x{cfg.lidar_resolution_width} / 32) but the model expects "
                f"{num_tokens} x {token_dim} (tokens.num_scene_tokens x tokens.scene_dim)"
            )
        self.num_tokens, self.token_dim = num_tokens, token_dim
        # An exported encoder (ONNX Runtime / TensorRT) replaces the eager one when attached; None = eager torch.
        self.backend: OnnxSceneEngine | TensorRTSceneEngine | None = None

    @property
    def engine_name(self) -> str:
        """Where the encoder runs: ``torch`` (eager) or the attached backend's name."""
        return "torch" if self.backend is None else self.backend.name

    def close(self) -> None:
        """Release the exported backend (the eager encoder belongs to the model)."""
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def check(self, inputs: Any) -> str | None:
        """Why ``inputs`` cannot be encoded, or None when they can."""
        if not isinstance(inputs, dict):
            return f"scene_inputs must be a dict {{'rgb', 'lidar'}}, got {type(inputs).__name__}"
        for key in SCENE_INPUT_KEYS:
            if key not in inputs or inputs[key] is None:
                return f"scene_inputs lacks '{key}' (present: {sorted(inputs)})"
            arr = inputs[key]
            shape = tuple(getattr(arr, "shape", ()))
            if shape != self.input_shapes[key]:
                return f"scene_inputs['{key}'] has shape {shape}, the encoder needs {self.input_shapes[key]}"
            if not np.all(np.isfinite(np.asarray(arr, dtype=np.float32))):
                return f"scene_inputs['{key}'] has NaN/inf values"
        return None

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[torch.Tensor, float]:
        """Encode one tick: float32 (1, num_tokens, token_dim) tokens on the model's device, and the wall ms."""
        t0 = time.perf_counter()
        rgb_np, lidar_np = (np.ascontiguousarray(inputs[k], dtype=np.float32)[None] for k in SCENE_INPUT_KEYS)
        if self.backend is not None:
            feature = self.backend(rgb_np, lidar_np)  # TensorRT synchronises its stream before returning
            tokens = feature.flatten(2).transpose(1, 2).float().contiguous().to(self.device)
        else:
            tokens = self._eager(torch.from_numpy(rgb_np), torch.from_numpy(lidar_np))
        if tokens.shape != (1, self.num_tokens, self.token_dim):
            expected = (1, self.num_tokens, self.token_dim)
            raise RuntimeError(f"scene encoder returned {tuple(tokens.shape)} tokens, expected {expected}")
        return tokens, (time.perf_counter() - t0) * 1e3

    def _eager(self, rgb: torch.Tensor, lidar: torch.Tensor) -> torch.Tensor:
        ctx = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            rgb = rgb.to(self.device, self.dtype, non_blocking=True)
            lidar = lidar.to(self.device, self.dtype, non_blocking=True)
            feature = self.encoder(rgb, lidar)
            # Row-major over (h, w): token i = cell (i // w, i % w), the released gen pass order.
            tokens = feature.flatten(2).transpose(1, 2).float().contiguous()
            if self.stream is not None:
                self.stream.synchronize()  # the measured time must include the GPU work
        return tokens
