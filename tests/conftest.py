"""Shared fixtures: everything offline, tiny random models, deterministic seeds."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model():
    from automot.model import build_model

    return build_model("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_scene_model():
    """Tiny preset with 4 scene tokens, so the scene-token path is exercised too."""
    from automot.model import build_model, get_config

    cfg = get_config("tiny")
    cfg.tokens.num_scene_tokens = 4
    cfg.tokens.scene_dim = 12
    cfg.name = "tiny-scene"
    return build_model(cfg, seed=1)
