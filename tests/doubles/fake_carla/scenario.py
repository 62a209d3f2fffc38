"""The route scenario of the fake server: a straight road through the route's XML keypoints.

``FakeRouteScenario`` replaces ``leaderboard.scenarios.route_scenario.RouteScenario`` (which needs the town's
road network for ``GlobalRoutePlanner`` and spawns traffic / scenario actors). It keeps the parts the evaluator,
ScenarioManager and StatisticsManager use, built from upstream pieces: scenario_runner's ``BasicScenario`` tree,
the real ``RouteCompletionTest`` / ``CollisionTest`` / ``MinimumSpeedRouteTest`` / ``ActorBlockedTest`` criteria
and a ``RouteTimeoutBehavior`` whose minimum timeout is ``FAKE_CARLA_ROUTE_S`` seconds of game time (default 2.0),
so every route ends quickly as "Failed - Agent timed out" (a finished route, not one resume re-runs).
The GPS route uses the leaderboard's own ``_location_to_gps`` / ``_get_latlon_ref``.
"""

from __future__ import annotations

import math
import os

import carla
import py_trees
from agents.navigation.local_planner import RoadOption  # pyright: ignore[reportMissingImports]
from leaderboard.utils.route_manipulation import _get_latlon_ref, _location_to_gps  # pyright: ignore[reportMissingImports]
from srunner.scenariomanager.carla_data_provider import CarlaDataProvider  # pyright: ignore[reportMissingImports]
from srunner.scenariomanager.scenarioatomics.atomic_criteria import (  # pyright: ignore[reportMissingImports]
    ActorBlockedTest,
    CollisionTest,
    MinimumSpeedRouteTest,
    RouteCompletionTest,
)
from srunner.scenariomanager.timer import RouteTimeoutBehavior  # pyright: ignore[reportMissingImports]
from srunner.scenarios.basic_scenario import BasicScenario  # pyright: ignore[reportMissingImports]

HOP_M = 1.0


def road_through_keypoints(keypoints: list) -> list:
    """[(carla.Transform, RoadOption.LANEFOLLOW)] every HOP_M metres along straight segments between keypoints."""
    route = []
    for a, b in zip(keypoints[:-1], keypoints[1:]):
        dx, dy, dz = b.x - a.x, b.y - a.y, b.z - a.z
        length = math.hypot(dx, dy)
        if length < 1e-6:
            continue
        yaw = math.degrees(math.atan2(dy, dx))
        steps = max(1, int(length // HOP_M))
        for i in range(steps):
            f = i * HOP_M / length
            loc = carla.Location(a.x + f * dx, a.y + f * dy, a.z + f * dz)
            route.append((carla.Transform(loc, carla.Rotation(yaw=yaw)), RoadOption.LANEFOLLOW))
    last = keypoints[-1]
    yaw = route[-1][0].rotation.yaw if route else 0.0
    route.append(
        (carla.Transform(carla.Location(last.x, last.y, last.z), carla.Rotation(yaw=yaw)), RoadOption.LANEFOLLOW)
    )
    return route


class _ShortRouteTimeout(RouteTimeoutBehavior):
    """The route times out after exactly FAKE_CARLA_ROUTE_S of game time (progress adds no time)."""

    MIN_TIMEOUT = float(os.environ.get("FAKE_CARLA_ROUTE_S", "2.0"))
    TIMEOUT_ROUTE_PERC = 1e12


class FakeRouteScenario(BasicScenario):
    """Drop-in for the leaderboard's RouteScenario (same constructor and attributes the evaluator reads)."""

    category = "RouteScenario"

    def __init__(self, world, config, debug_mode=0, criteria_enable=True):
        self.client = CarlaDataProvider.get_client()
        self.config = config
        self.world = world
        self.map = CarlaDataProvider.get_map()
        self.timeout = 10000
        self.list_scenarios = []
        self.route = road_through_keypoints(config.keypoints)
        lat_ref, lon_ref = _get_latlon_ref(world)
        self.gps_route = [(_location_to_gps(lat_ref, lon_ref, tf.location), opt) for tf, opt in self.route]

        start = self.route[0][0]
        spawn = carla.Transform(
            carla.Location(start.location.x, start.location.y, start.location.z + 0.5), start.rotation
        )
        blueprint = world.get_blueprint_library().find("vehicle.lincoln.mkz_2020")
        blueprint.set_attribute("role_name", "hero")
        ego = world.spawn_actor(blueprint, spawn)
        CarlaDataProvider.register_actor(ego, spawn)
        world.tick()
        super().__init__(config.name, [ego], config, world, debug_mode > 3, False, criteria_enable)
        CarlaDataProvider.set_runtime_init_mode(True)

    def _initialize_environment(self, world):
        world.set_weather(self.config.weather[0][1])

    def _create_behavior(self):
        return py_trees.behaviours.Running(name="Route Behavior")

    def _create_test_criteria(self):
        ego = self.ego_vehicles[0]
        criteria = py_trees.composites.Parallel(name="Criteria", policy=py_trees.common.ParallelPolicy.SUCCESS_ON_ONE)
        criteria.add_child(RouteCompletionTest(ego, route=self.route))
        criteria.add_child(CollisionTest(ego, name="CollisionTest"))
        criteria.add_child(MinimumSpeedRouteTest(ego, self.route, checkpoints=20, name="MinSpeedTest"))
        criteria.add_child(
            ActorBlockedTest(ego, min_speed=0.1, max_time=60.0, terminate_on_failure=True, name="AgentBlockedTest")
        )
        return criteria

    def _create_timeout_behavior(self):
        return _ShortRouteTimeout(self.ego_vehicles[0], self.route)

    def _create_weather_behavior(self):
        return None

    def _create_lights_behavior(self):
        return None

    def build_scenarios(self, ego_vehicle, debug=False):
        pass

    def spawn_parked_vehicles(self, ego_vehicle, max_scenario_distance=10):
        pass

    def get_parking_slots(self):
        return []
