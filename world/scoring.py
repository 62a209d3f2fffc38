"""Leaderboard 2.0 / Bench2Drive scoring for the embedded world, and the results.json they write.

Per tick, ``RouteScorer.step`` applies the LB2 criteria to the ego's state:
  * route completion: furthest arc length reached along the planned path (projection within a forward window,
    accepted within 10 m of the path); >= 99 % counts as 100 % and ends the route ("Completed"/"Perfect");
  * collisions: vehicles x0.6, static objects x0.65; the last collided actor is ignored for 5 s and any contact
    within 3 m of the last collision spot is ignored (LB2 CollisionTest); leaving the drivable road is a layout collision (x0.65), once per excursion;
  * outside_route_lanes: metres driven outside the route's lanes (off-road or in an opposite-direction lane);
    the penalty multiplies by (1 - metres / route length), as LB2's PENALTY_PERC_DICT 'increases' rule with 0;
  * route deviation (> 30 m from the path), agent blocked (< 0.1 m/s for 180 s) and timeout (tick limit) end the
    route as "Failed - Agent deviated from the route" / "Failed - Agent got blocked" / "Failed - Agent timed out".
  * a run stopped by SIGINT / SIGTERM ends between ticks as "Failed - interrupted" (``RouteScorer.interrupt``).
  * a user's tick cap (``limit_is_cap``, ``automot drive --ticks N``, which replaces the route's own tick limit) ends
    the route as "Stopped - tick limit": not a timeout (no ``route_timeout`` entry), DS = the RC reached x the
    penalties so far, and like every unfinished route it is no success.
  * min speed: every 1/20 of the route (and at the end past 95 %), one ``min_speed_infractions`` entry
    "Average speed is P% of the surrounding traffic's one", P = mean ego speed / mean traffic speed over that
    stretch x 100 (100 without traffic), as MinimumSpeedRouteTest writes it; no penalty (Bench2Drive's 'unused').
DS = RC x product of penalties (score_composed).
Records carry Bench2Drive's fields: ``route_id`` RouteScenario_<id>_rep<k>, ``weather_id`` a string, ``save_name``.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from automot.world.leaderboard_record import INFRACTION_KEYS, PENALTY, global_record, leaderboard_values
from automot.world.route_path import RoutePath

INTERRUPTED = "interrupted"  # RouteScorer.failure of a stopped run: status "Failed - interrupted"
TICK_LIMIT = "tick limit"  # RouteScorer.failure of a route stopped by the user's cap: status "Stopped - tick limit"


@dataclass(frozen=True)
class ScoringParams:
    """LB2 criteria thresholds."""

    deviation_m: float = 30.0
    progress_accept_m: float = 10.0
    progress_window_m: float = 30.0
    completion_pct: float = 99.0
    blocked_speed: float = 0.1
    blocked_time_s: float = 180.0
    collision_repeat_s: float = 5.0
    collision_min_move_m: float = 3.0
    collision_reset_m: float = 5.0
    min_speed_checkpoints: int = 20


@dataclass(frozen=True)
class Contact:
    """An actor touching the ego this tick."""

    id: int
    type_id: str

    @property
    def is_vehicle(self) -> bool:
        return self.type_id.startswith("vehicle.")


def _at(x: float, y: float) -> str:
    return f"(x={x:.3f}, y={y:.3f}, z=0.000)"


class RouteScorer:
    """Accumulates infractions and progress over one route; ``done`` turns True when the route ends."""

    def __init__(
        self,
        path: RoutePath,
        dt: float,
        tick_limit: int,
        params: ScoringParams = ScoringParams(),
        limit_is_cap: bool = False,
    ) -> None:
        self.path = path
        self.dt = dt
        self.tick_limit = tick_limit
        self.limit_is_cap = limit_is_cap  # a user's cap: reaching it stops the route, it does not time it out
        self.params = params
        self.infractions: dict[str, list[str]] = {k: [] for k in INFRACTION_KEYS}
        self.penalty = 1.0
        self.s_reached = 0.0
        self.completed = False
        self.failure = ""
        self.ticks = 0
        self.outside_m = 0.0
        self._prev_xy: tuple[float, float] | None = None
        self._offroad = False
        self._blocked_s = 0.0
        self._last_id: int | None = None
        self._last_time = 0.0
        self._last_xy: tuple[float, float] | None = None
        self._speed_s = 0.0  # arc length of the last min-speed checkpoint
        self._ego_speed_sum = 0.0
        self._traffic_speed_sum = 0.0
        self._speed_points = 0

    @property
    def done(self) -> bool:
        return self.completed or bool(self.failure)

    @property
    def route_completion(self) -> float:
        """RC in percent."""
        return 100.0 if self.completed else 100.0 * self.s_reached / self.path.length

    def step(
        self,
        x: float,
        y: float,
        speed: float,
        contacts: Sequence[Any] = (),
        on_road: bool = True,
        in_lanes: bool = True,
        traffic_speed: float | None = None,
    ) -> None:
        """Score the state after one tick; ``contacts`` have ``id`` and ``type_id`` (vehicle.* or static.*);
        ``traffic_speed`` is the mean speed of the surrounding traffic (None: no traffic)."""
        if self.done:
            return
        self.ticks += 1
        now = self.ticks * self.dt
        moved = 0.0 if self._prev_xy is None else math.hypot(x - self._prev_xy[0], y - self._prev_xy[1])
        self._prev_xy = (x, y)
        p = self.params
        s, _, dist = self.path.project((x, y), self.s_reached - 5.0, self.s_reached + p.progress_window_m)
        if dist <= p.progress_accept_m:
            self.s_reached = max(self.s_reached, s)
        if self.s_reached - self._speed_s > self.path.length / p.min_speed_checkpoints:
            self._min_speed_checkpoint()
            self._speed_s = self.s_reached
        if traffic_speed is not None and traffic_speed > 0.0:
            self._ego_speed_sum += speed
            self._traffic_speed_sum += traffic_speed
            self._speed_points += 1
        if not in_lanes and moved > 0.0:
            self._add_outside(moved)
        for contact in contacts:
            self._collision(contact, now, x, y)
        if not on_road and not self._offroad:
            self._record(
                "collisions_layout", f"Agent collided against object with type=static.terrain and id=0 at {_at(x, y)}"
            )
        self._offroad = not on_road
        if self.path.project((x, y))[2] > p.deviation_m:
            self.infractions["route_dev"].append(f"Agent deviated from the route at {_at(x, y)}")
            self.failure = "Agent deviated from the route"
            return
        self._blocked_s = self._blocked_s + self.dt if speed < p.blocked_speed else 0.0
        if self._blocked_s >= p.blocked_time_s:
            self.infractions["vehicle_blocked"].append(f"Agent got blocked at {_at(x, y)}")
            self.failure = "Agent got blocked"
            return
        if 100.0 * self.s_reached / self.path.length >= p.completion_pct:
            self.completed = True
            return
        if self.ticks >= self.tick_limit:
            if self.limit_is_cap:
                self.failure = TICK_LIMIT
            else:
                self.timeout()

    def timeout(self) -> None:
        """End the route as timed out (tick limit reached)."""
        if not self.done:
            self.infractions["route_timeout"].append("Route timeout.")
            self.failure = "Agent timed out"

    def interrupt(self) -> None:
        """End the route early because the run was stopped (SIGINT / SIGTERM): "Failed - interrupted", with the
        route completion reached so far and the infractions recorded until then."""
        if not self.done:
            self.failure = INTERRUPTED

    def _collision(self, contact: Any, now: float, x: float, y: float) -> None:
        # LB2 CollisionTest: ignore the last collided actor for 5 s, and anything within 3 m of the last
        # collision spot until the ego is 5 m away from it.
        if self._last_id is not None and now - self._last_time > self.params.collision_repeat_s:
            self._last_id = None
        if self._last_xy is not None and math.dist((x, y), self._last_xy) > self.params.collision_reset_m:
            self._last_xy = None
        if contact.id == self._last_id:
            return
        if self._last_xy is not None and math.dist((x, y), self._last_xy) <= self.params.collision_min_move_m:
            return
        self._last_id, self._last_time, self._last_xy = contact.id, now, (x, y)
        if contact.type_id.startswith("vehicle."):
            key = "collisions_vehicle"
        elif contact.type_id.startswith("walker."):
            key = "collisions_pedestrian"
        else:
            key = "collisions_layout"
        self._record(
            key, f"Agent collided against object with type={contact.type_id} and id={contact.id} at {_at(x, y)}"
        )

    def _min_speed_checkpoint(self) -> None:
        """One min-speed entry for the stretch since the last checkpoint (leaderboard MinimumSpeedRouteTest)."""
        if self._speed_points and self._traffic_speed_sum:
            pct = round(self._ego_speed_sum / self._traffic_speed_sum * 100, 2)
        else:
            pct = 100
        self.infractions["min_speed_infractions"].append(f"Average speed is {pct}% of the surrounding traffic's one")
        self._ego_speed_sum = self._traffic_speed_sum = 0.0
        self._speed_points = 0

    def finish(self) -> None:
        """End of route: the last min-speed checkpoint when past 95 % (routes end around 99 %), like the criterion."""
        if not getattr(self, "_finished", False):
            self._finished = True
            if self.s_reached / self.path.length > 0.95:
                self._min_speed_checkpoint()

    def _record(self, key: str, message: str) -> None:
        self.infractions[key].append(message)
        self.penalty *= PENALTY[key]

    def _add_outside(self, metres: float) -> None:
        self.outside_m += metres
        pct = 100.0 * self.outside_m / self.path.length
        self.infractions["outside_route_lanes"] = [
            f"Agent went outside its route lanes for about {round(self.outside_m, 3)} meters "
            f"({round(pct, 2)}% of the completed route)"
        ]

    def scores(self) -> dict[str, float]:
        """score_route, score_penalty, score_composed (rounded like LB2)."""
        penalty = self.penalty * max(0.0, 1.0 - self.outside_m / self.path.length)
        rc = self.route_completion
        return {
            "score_route": round(rc, 6),
            "score_penalty": round(penalty, 6),
            "score_composed": round(max(rc * penalty, 0.0), 6),
        }

    def status(self) -> str:
        """LB2 status string."""
        if self.completed:
            return "Completed" if any(self.infractions.values()) else "Perfect"
        if self.failure == TICK_LIMIT:
            return "Stopped - tick limit"
        return f"Failed - {self.failure}" if self.failure else "Failed"

    def record(
        self,
        route_name: str,
        town: str,
        duration_game: float,
        duration_system: float,
        *,
        route_id: int | str = 0,
        repetition: int = 0,
        save_name: str | None = None,
        weather_id: str = "0",
    ) -> dict[str, Any]:
        """The route record of ``_checkpoint.records`` (B2D fields included, as the fork's StatisticsManager)."""
        self.finish()
        rid = f"RouteScenario_{route_id}_rep{repetition}"
        return {
            "index": 0,
            "route_id": rid,
            "scenario_name": route_name,
            "weather_id": str(weather_id),
            "save_name": save_name or default_save_name(rid, town, route_name, weather_id),
            "town_name": town,
            "status": self.status(),
            "num_infractions": sum(len(v) for v in self.infractions.values()),
            "infractions": {k: list(v) for k, v in self.infractions.items()},
            "scores": self.scores(),
            "meta": {
                "route_length": round(self.path.length, 3),
                "duration_game": round(duration_game, 3),
                "duration_system": round(duration_system, 3),
            },
        }


def route_number(name: str, known: list[str] | None = None) -> int:
    """The numeric id of an embedded route for ``RouteScenario_<id>``: its position among the shipped routes
    (sorted names), else a stable number >= 1000 from its name (a route file given by path)."""
    if known is None:
        from automot.world.routes import list_routes

        known = list_routes()
    if name in known:
        return known.index(name)
    return 1000 + zlib.crc32(name.encode("utf-8")) % 900000


def default_save_name(route_id: str, town: str, scenario: str, weather_id: str | int = "0") -> str:
    """Bench2Drive's per-route folder name: ``<route_id>_<town>_<scenario>_<weather>_<mm_dd_HH_MM_SS>``."""
    town_part = town.replace("/", "-")
    return f"{route_id}_{town_part}_{scenario}_{weather_id}_{time.strftime('%m_%d_%H_%M_%S')}"


def build_results(records: list[dict[str, Any]], sensors: list[str], entry_status: str = "Finished") -> dict[str, Any]:
    """Full results.json (LB2 checkpoint format) plus top-level score_* of the first route for convenience."""
    glob = global_record(records, len(records))
    values, labels = leaderboard_values(glob)
    first = records[0]["scores"] if records else {"score_route": 0.0, "score_penalty": 0.0, "score_composed": 0.0}
    return {
        "_checkpoint": {"global_record": glob, "progress": [len(records), len(records)], "records": records},
        "entry_status": entry_status,
        "eligible": entry_status == "Finished",
        "sensors": sensors,
        "values": values,
        "labels": labels,
        **first,
    }
