"""Run the real ``leaderboard_evaluator.main()`` against the fake server.

Usage (PYTHONPATH = tests/ + LEADERBOARD_ROOT + SCENARIO_RUNNER_ROOT + CARLA PythonAPI):
``python -m fake_carla.bootstrap <the evaluator's own argv>``

What it changes, and nothing else:
1. ``carla.Client`` -> ``fake_carla.sim.Client`` (the evaluator builds its client from ``carla.Client``);
2. ``leaderboard_evaluator.RouteScenario`` -> ``fake_carla.scenario.FakeRouteScenario``;
3. the documented one-line fix for ``Element.getchildren()`` (automot.world.evaluator.GETCHILDREN_FIX), applied
   to the route parser's source in memory instead of on the read-only checkout;
4. Bench2Drive fork only: its ``time.sleep(30)`` after launching ``$CARLA_ROOT/CarlaUE4.sh`` (the tests' CARLA_ROOT
   holds a CarlaUE4.sh that exits at once) is shortened to 0.01 s.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from pathlib import Path

from automot.world.evaluator import patched_route_parser_source


def _patch_route_parser() -> None:
    name = "leaderboard.utils.route_parser"
    importlib.import_module("leaderboard.utils")
    spec = importlib.util.find_spec(name)
    source = Path(spec.origin).read_text(encoding="utf-8")
    patched = patched_route_parser_source(source)
    if patched == source:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(patched, spec.origin, "exec"), module.__dict__)
    sys.modules["leaderboard.utils"].route_parser = module


class _QuickSleep:
    """The ``time`` module as the fork's evaluator sees it, with sleeps capped at 10 ms."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(float(seconds), 0.01))


def main(argv: list[str]) -> None:
    import carla
    from fake_carla.sim import Client

    carla.Client = Client
    _patch_route_parser()
    evaluator = importlib.import_module("leaderboard.leaderboard_evaluator")
    from fake_carla.scenario import FakeRouteScenario

    evaluator.RouteScenario = FakeRouteScenario
    if hasattr(evaluator, "find_free_port"):  # the Bench2Drive fork
        evaluator.time = _QuickSleep()
    sys.argv = [evaluator.__file__, *argv]
    evaluator.main()


if __name__ == "__main__":
    main(sys.argv[1:])
