"""Builds the agent's dual-rate runtime: the model from the config's ``model`` section, the runtime from its
``runtime`` section (the runtime's own ``RuntimeConfig``), by direct imports an editor can follow.

The agent talks to its runtime through the ``DrivingRuntime`` protocol (runtime/types.py)::

    runtime.submit(obs: DrivingObservation, sim_time: float, frame: int) -> None   # runtime decides on refresh
    runtime.step(state: DrivingState, sim_time: float, frame: int) -> RuntimeOutput
    runtime.stats() -> dict
    runtime.close() -> None

Tests and embedding worlds can hand ``AutoMoTAgent`` any ``RuntimeFactory`` ``(AgentConfig) -> DrivingRuntime``.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from automot.agent.config import AgentConfig, ModelConfig
from automot.errors import EnvironmentProblem
from automot.model import build_model, load_pretrained
from automot.runtime.runtime import AutoMoTRuntime
from automot.runtime.types import DrivingRuntime

log = logging.getLogger(__name__)

RUNTIME_METHODS = ("submit", "step", "stats", "close")
RuntimeFactory = Callable[[AgentConfig], DrivingRuntime]

# The leaderboard builds a new agent per route; keeping the last model avoids reloading weights 220 times.
_model_cache: dict[tuple, Any] = {}


class RuntimeUnavailableError(EnvironmentProblem):
    """The configured model cannot be loaded in this environment (a missing optional package)."""


def check_runtime(obj: object) -> DrivingRuntime:
    """Return ``obj`` if it has the four runtime methods (an injected factory's result is checked at run time,
    where the type checker cannot); raise TypeError naming the missing ones."""
    missing = [name for name in RUNTIME_METHODS if not callable(getattr(obj, name, None))]
    if missing:
        raise TypeError(f"runtime object {type(obj).__name__} lacks method(s) {', '.join(missing)}")
    return typing.cast(DrivingRuntime, obj)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def released_layout(checkpoint: str | None) -> str | None:
    """'released' (the original folder, bev_config.json + config.json), 'converted' (``automot convert`` output,
    bev_encoder.safetensors + config.yaml) or None: those two load with the BEV encoder attached."""
    if not checkpoint or not Path(checkpoint).is_dir():
        return None
    folder = Path(checkpoint)
    if (folder / "bev_encoder.safetensors").is_file() and (folder / "config.yaml").is_file():
        return "converted"
    if (folder / "bev_config.json").is_file() and (folder / "config.json").is_file():
        return "released"
    return None


def load_model(cfg: ModelConfig, device: str, cache: bool = True) -> Any:
    """The released / converted AutoMoT folder (BEV encoder attached), ``model.load_pretrained(checkpoint)`` for
    our checkpoints, else ``model.build_model(preset)``."""
    key = (cfg.preset, cfg.checkpoint, device, cfg.dtype, cfg.refiner, cfg.ema)
    if cache and key in _model_cache:
        return _model_cache[key]
    if cfg.refiner and not cfg.checkpoint:
        raise ValueError("model.refiner: true needs model.checkpoint (the refiner is saved with a trained checkpoint)")
    released = released_layout(cfg.checkpoint)
    if cfg.ema and released != "released":
        raise ValueError(
            "model.ema: true needs model.checkpoint to be the released AutoMoT folder (ema.safetensors is read "
            f"from there; convert with `automot convert --ema` instead), got {cfg.checkpoint!r}"
        )
    if released is not None:
        if cfg.refiner:
            raise ValueError("model.refiner: true is not available for the released AutoMoT checkpoint")
        try:  # only for the released layouts (safetensors, the BEV encoder)
            from automot.model.released import load_converted, load_released
        except ImportError as exc:
            raise RuntimeUnavailableError(f"cannot load the released AutoMoT layout: {exc}") from exc
        if released == "converted":
            net = load_converted(cfg.checkpoint, device=device, dtype=cfg.dtype)
        else:
            net = load_released(cfg.checkpoint, device=device, dtype=cfg.dtype, preset=cfg.preset, ema=cfg.ema)
    elif cfg.checkpoint:
        net = load_pretrained(cfg.checkpoint, device=device, dtype=cfg.dtype, refiner=cfg.refiner)
    else:
        log.warning("model.checkpoint is not set: preset %r with random weights (demo only)", cfg.preset)
        net = build_model(cfg.preset, device=device, dtype=cfg.dtype)
    if cache:
        _model_cache.clear()  # one model at a time: a second full-size model would not fit next to the first
        _model_cache[key] = net
    return net


def build_runtime(cfg: AgentConfig) -> AutoMoTRuntime:
    """The real runtime for ``cfg``: the model from the ``model`` section (:func:`load_model`), scheduled as the
    ``runtime`` section (the runtime's own RuntimeConfig, passed as is)."""
    device = resolve_device(cfg.model.device)
    net = load_model(cfg.model, device, cache=cfg.model.cache)
    vocab = cfg.model.decision_vocabulary
    net.constrain_decisions = released_layout(cfg.model.checkpoint) is None if vocab is None else bool(vocab)
    return AutoMoTRuntime(net, cfg.runtime)
