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


@pytest.fixture(scope="session")
def agent_kit():
    """Leaderboard-agent doubles (tests/doubles/agent_doubles.py): ``FakeRuntime``, ``plan``, ``inputs``, ``agent_yaml``,
    ``make_agent``, ``is_full_brake`` and the ``W``, ``H``, ``GEOREF`` constants they use."""
    from doubles import agent_doubles

    return agent_doubles


@pytest.fixture(scope="session")
def scene_kit():
    """Scene-encoder and creeping-car inputs (tests/doubles/scene_helpers.py): ``TP``, ``observation``, ``scene_inputs``,
    ``creeping_plan``, ``creeping_inputs``."""
    from doubles import scene_helpers

    return scene_helpers


@pytest.fixture(scope="session")
def fp64_reference():
    """The one fp64 per-head reference of an action-expert layer (tests/doubles/fp64_reference.py):
    ``fp64_reference.action_layer(weights, x, past_k, past_v, cos, sin, mask, head_dim=, group=, names=)``, with
    ``fp64_reference.layer_weight_names(prefix, suffix)`` for released-style weight keys."""
    from doubles import fp64_reference

    return fp64_reference
