"""Builds the dual-rate runtime for the agent, importing ``model``/``runtime`` (and torch) only when needed.

The agent talks to its runtime through four methods (see ``RUNTIME_METHODS``)::

    runtime.submit(obs: DrivingObservation, sim_time: float, frame: int) -> None   # runtime decides on refresh
    runtime.step(state: DrivingState, sim_time: float, frame: int) -> RuntimeOutput
    runtime.stats() -> dict
    runtime.close() -> None

Tests and embedding worlds can hand ``AutoMoTAgent`` any factory ``(AgentConfig) -> object`` with those methods.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from automot.agent.config import AgentConfig, ModelConfig
from automot.errors import EnvironmentProblem

log = logging.getLogger(__name__)

RUNTIME_METHODS = ("submit", "step", "stats", "close")

# The leaderboard builds a new agent per route; keeping the last model avoids reloading weights 220 times.
_model_cache: dict[tuple, Any] = {}


class RuntimeUnavailableError(EnvironmentProblem):
    """The ``model``/``runtime`` packages (or the configured model) cannot be used."""


def check_runtime(obj: Any) -> Any:
    """Return ``obj`` if it has the four runtime methods; raise TypeError naming the missing ones."""
    missing = [name for name in RUNTIME_METHODS if not callable(getattr(obj, name, None))]
    if missing:
        raise TypeError(f"runtime object {type(obj).__name__} lacks method(s) {', '.join(missing)}")
    return obj


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RuntimeUnavailableError(
            f"cannot import the '{name}' package ({exc}); install the project (pip install -e .) or put its root "
            "on PYTHONPATH"
        ) from exc


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
    model_pkg = _import("automot.model")
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
        loader = _import("automot.model.released")
        if released == "converted":
            net = loader.load_converted(cfg.checkpoint, device=device, dtype=cfg.dtype)
        else:
            net = loader.load_released(cfg.checkpoint, device=device, dtype=cfg.dtype, preset=cfg.preset, ema=cfg.ema)
    elif cfg.checkpoint:
        net = model_pkg.load_pretrained(cfg.checkpoint, device=device, dtype=cfg.dtype, refiner=cfg.refiner)
    else:
        log.warning("model.checkpoint is not set: preset %r with random weights (demo only)", cfg.preset)
        net = model_pkg.build_model(cfg.preset, device=device, dtype=cfg.dtype)
    if cache:
        _model_cache.clear()  # one model at a time: a second full-size model would not fit next to the first
        _model_cache[key] = net
    return net


def build_runtime(cfg: AgentConfig) -> Any:
    """Build the real runtime from the ``model`` and ``runtime`` config sections.

    Calls ``runtime.build_runtime(net, mode=, engine=, device=, sync_every=, refresh_every=, latency_ticks=,
    max_snapshot_age_s=,
    refresh_timeout_s=, **options)``
    where ``net`` comes from :func:`load_model` and ``options`` are further ``runtime.RuntimeConfig`` fields.
    """
    runtime_pkg = _import("automot.runtime")
    factory = getattr(runtime_pkg, "build_runtime", None)
    if not callable(factory):
        raise RuntimeUnavailableError(
            f"'automot.runtime' ({getattr(runtime_pkg, '__file__', '?')}) has no build_runtime()"
        )
    device = resolve_device(cfg.model.device)
    net = load_model(cfg.model, device, cache=cfg.model.cache)
    rc = cfg.runtime
    runtime = factory(
        net,
        mode=rc.mode,
        engine=rc.engine,
        device=device,
        sync_every=rc.sync_every,
        refresh_every=rc.refresh_every,
        latency_ticks=rc.latency_ticks,
        max_snapshot_age_s=rc.max_snapshot_age_s,
        refresh_timeout_s=rc.refresh_timeout_s,
        **rc.options,
    )
    return check_runtime(runtime)
