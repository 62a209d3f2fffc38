"""Leaderboard agent file for the privileged expert: ``automot drive --agent expert`` or
``run_route(name, "world/expert_agent.py", "", out)``.

It follows the agent contract (constructor, set_global_plan, setup, sensors, run_step, destroy) so the runner
scores it exactly like a sensor agent, but it ignores ``input_data`` and reads the true world state from
``world.provider`` (like CARLA's privileged autopilots read ``CarlaDataProvider``). Only works in the embedded
world.
"""

from __future__ import annotations

from typing import Any

from automot.agent.contract import AutonomousAgent, Track, make_control
from automot.world.expert import ExpertDriver
from automot.world.provider import get_world


def get_entry_point() -> str:
    """Class name the evaluator instantiates."""
    return "ExpertAgent"


class ExpertAgent(AutonomousAgent):
    """Privileged rule-based driver (pure pursuit + IDM with yielding)."""

    def setup(self, path_to_conf_file: str) -> None:
        """No configuration; the driver is built lazily on the first step (the world exists by then)."""
        self.track = Track.SENSORS
        self._driver: ExpertDriver | None = None

    def sensors(self) -> list[dict]:
        """Only a speedometer: the expert needs no rendered sensors, which keeps its runs fast."""
        return [{"type": "sensor.speedometer", "reading_frequency": 20, "id": "SPEED"}]

    def run_step(self, input_data: dict, timestamp: float) -> Any:
        """One control from the true state."""
        world = get_world()
        if self._driver is None or self._driver.world is not world:
            self._driver = ExpertDriver(world)
        c = self._driver.control()
        return make_control(throttle=c.throttle, steer=c.steer, brake=c.brake)

    def destroy(self) -> None:
        """Drop the driver (and with it the world reference)."""
        self._driver = None
