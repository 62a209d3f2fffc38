"""The private highway-env API the embedded world calls still exists (setup.py pins the tested highway-env series)."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from highway_env.envs.intersection_env import IntersectionEnv

HINT = "world/sim.py (EmbeddedWorld.step) calls it; adapt that call and the highway-env pin in setup.py"


def test_intersection_traffic_turnover_methods_exist():
    installed = version("highway-env")
    for name in ("_clear_vehicles", "_spawn_vehicle"):
        assert callable(getattr(IntersectionEnv, name, None)), (
            f"highway-env {installed}: IntersectionEnv.{name} is gone; {HINT}"
        )
    params = inspect.signature(IntersectionEnv._spawn_vehicle).parameters
    assert "spawn_probability" in params, (
        f"highway-env {installed}: IntersectionEnv._spawn_vehicle no longer takes spawn_probability; {HINT}"
    )
