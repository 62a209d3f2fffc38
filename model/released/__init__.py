"""The released AutoMoT checkpoint: loader/converter, BEV encoder, sensor preprocessing, config checks, numerics.

model = load_released("Automot/checkpoints", device="cuda")        # AutoMoTModel, bf16, tokenizer attached
feat = model.released.bev_encoder(*bev_inputs(bgr, lidar_points, model.released.bev_config))
snap = model.prefill(build_released_observation(model, frames, target_points, speed))
out = act_released(model, snap, bev_state(model, target_points, speed, feat))
"""

from automot.model.released.bev_config import BEVConfig, load_bev_config
from automot.model.released.bev_encoder import BEVEncoder
from automot.model.released.loader import (
    ReleasedParts,
    convert_released,
    expected_released_tensors,
    load_converted,
    load_released,
)
from automot.model.released.numerics import apply_released_numerics, keep_rotary_fp32
from automot.model.released.prompt import act_released, bev_state, build_released_observation, released_decision_text
from automot.model.released.sensors import LidarAccumulator, bev_inputs, camera_array, lidar_histogram

__all__ = [
    "BEVConfig",
    "BEVEncoder",
    "LidarAccumulator",
    "ReleasedParts",
    "act_released",
    "apply_released_numerics",
    "bev_inputs",
    "bev_state",
    "build_released_observation",
    "camera_array",
    "convert_released",
    "expected_released_tensors",
    "keep_rotary_fp32",
    "lidar_histogram",
    "load_bev_config",
    "load_converted",
    "load_released",
    "released_decision_text",
]
