"""Leaderboard agent file of ``automot redrive`` (debugging/redrive.py): the AutoMoT agent, whose control is replaced
by a run's recorded control before the hand-over tick, with the world checked against the run's world.jsonl.

The plan travels in the file named by ``AUTOMOT_REDRIVE_PLAN`` (JSON): ``from_tick``, ``controls`` ({tick: [steer,
throttle, brake]}) and ``states`` ({tick: world.jsonl tick line}). Before ``from_tick`` the agent runs as usual (its
history, state estimate, runtime and controllers stay warm) but the recorded control is applied and recorded; at
every tick up to and including ``from_tick`` the ego and every actor must equal the recorded ones at world.jsonl's
precision, else :class:`WorldDiverged` stops the drive (the embedded world was not deterministic).
"""

from __future__ import annotations

import json
import os
from typing import Any

from automot.agent.automot_agent import AutoMoTAgent
from automot.agent.contract import make_control

# The runner loads this file as a top-level module: the error class the caller catches comes from the package.
from automot.debugging.redrive import PLAN_ENV, WorldDiverged, check_state


def get_entry_point() -> str:
    return "RedriveAgent"


class RedriveAgent(AutoMoTAgent):
    def setup(self, path_to_conf_file: str) -> None:
        with open(os.environ[PLAN_ENV], encoding="utf-8") as fh:
            plan = json.load(fh)
        self.from_tick = int(plan["from_tick"])
        self.recorded_controls = {int(k): v for k, v in plan["controls"].items()}
        self.recorded_states = {int(k): v for k, v in plan["states"].items()}
        self.radius = float(plan.get("radius", 60.0))
        self.checked_ticks = 0
        self._source = None
        super().setup(path_to_conf_file)

    def run_step(self, input_data: dict, timestamp: float) -> Any:
        tick = self.step + 1
        if tick <= self.from_tick:
            self._check(tick)
        control = super().run_step(input_data, timestamp)
        if tick < self.from_tick:
            steer, throttle, brake = self.recorded_controls[tick]
            control = make_control(throttle=throttle, steer=steer, brake=brake)
            self.last_control = control
            self._prev_control = (float(steer), float(throttle), float(brake))
        return control

    def _emit(self, record: Any, context: Any) -> None:
        if record.frame < self.from_tick:  # ticks.jsonl holds the control applied: the recorded one
            record.steer, record.throttle, record.brake = self.recorded_controls[record.frame]
            record.control_mode = "redrive:recorded"
        super()._emit(record, context)

    def _check(self, tick: int) -> None:
        from automot.world.provider import get_world
        from automot.world.world_log import EmbeddedSource

        recorded = self.recorded_states.get(tick)
        if recorded is None:
            raise WorldDiverged(f"tick {tick}: the run's world.jsonl has no state to check against")
        world = get_world()
        if self._source is None or self._source.world is not world:
            self._source = EmbeddedSource(world)
        check_state(tick, recorded, self._source.snapshot(self.radius))
        self.checked_ticks += 1
