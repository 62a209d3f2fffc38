"""Process-wide handle on the running embedded world, the CARLA-free analogue of ``CarlaDataProvider``.

Only privileged code (the rule-based expert) reads it; sensor agents see nothing but ``input_data``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automot.world.sim import EmbeddedWorld

_world: EmbeddedWorld | None = None


def set_world(world: EmbeddedWorld | None) -> None:
    """Publish (or with None, withdraw) the world of the route being run."""
    global _world
    _world = world


def get_world() -> EmbeddedWorld:
    """The running world; raises when called outside ``world.runner.run_route``."""
    if _world is None:
        raise RuntimeError(
            "no embedded world is running: the privileged expert only works under world.runner.run_route"
        )
    return _world
