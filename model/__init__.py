"""AutoMoT model: a Hugging Face VLM (understanding expert) and an action expert fused layer by layer."""

from automot.model.automot import AutoMoTModel, FastStep
from automot.model.config import PRESETS, AutoMoTConfig, ConfigError, get_config
from automot.model.factory import build_model, make_dummy_inputs
from automot.model.io import load_pretrained, save_pretrained
from automot.model.types import ActionOutput, ActionState, KVSnapshot, Observation

__all__ = [
    "PRESETS",
    "ActionOutput",
    "ActionState",
    "AutoMoTConfig",
    "AutoMoTModel",
    "ConfigError",
    "FastStep",
    "KVSnapshot",
    "Observation",
    "build_model",
    "get_config",
    "load_pretrained",
    "save_pretrained",
    "make_dummy_inputs",
]
