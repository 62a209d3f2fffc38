"""Bench2Drive / Leaderboard 2.0 metrics, our own implementation of their definitions.

The definitions (docs/bench2drive-metrics.md; docs/leaderboard-agent-interface.md §8) restated from
Bench2Drive 0.0.4's ``tools/merge_route_json.py``, ``tools/ability_benchmark.py`` and
``tools/efficiency_smoothness_benchmark.py`` and the leaderboard's ``StatisticsManager``. Those tools are not copied;
this module gives the same numbers on the same records:

* **Driving score / route completion / penalty**: the sum of ``scores.score_composed`` (``score_route``,
  ``score_penalty``) over the records divided by the number of routes that *should* have been driven
  (``n_routes``; Bench2Drive's merge always divides by **220**), so a missing or crashed route counts 0.
* **Success**: status ``Completed`` or ``Perfect`` and every infraction list empty except ``min_speed_infractions``;
  success rate = successes / ``n_routes``.
* **Infractions per km**: the leaderboard's global record: km driven = sum of route_length/1000 x score_route/100
  (at least 0.001 km); every list counts its entries per km, except ``outside_route_lanes`` which sums the metres
  parsed from its message (word 8) in km.
* **Multi-ability**: each route of the route XML is looked up by ``record.route_id.split('_')[1] == route@id``
  (first matching record); its ability set comes from its first scenario's type; per ability successes / routes;
  ``mean`` the average of the five; routes without a record are ``crashed`` and left out of the denominators.
  Traffic_Signs partial credit (a failed Traffic_Signs route still counts for Traffic_Signs when
  ``score_route/100 > (k + 8) / n`` on the route densified at 1 m with CARLA's ``GlobalRoutePlanner``, k the
  1-based index of its first junction waypoint, and it has no ``stop_infraction`` / ``red_light``) needs the town's
  OpenDRIVE map: :func:`carla_junction_index` loads it from ``$CARLA_ROOT`` when present; otherwise Traffic_Signs is
  computed without partial credit and the summary says so in ``notes``.
* **Driving efficiency**: per route the mean of the percentages parsed from its ``min_speed_infractions``
  messages (``"Average speed is P% of ..."``; values over 1000 % ignored), then the mean over the routes that have
  any; ``None`` when none has (the tool divides by zero there).
* **Smoothness**: per route (``metric_info.json``, dt = 0.1 s) the share of 20-step segments (shorter tail dropped;
  a route of <= 20 steps is one segment) whose signals, Savitzky-Golay smoothed per segment (window min(7, n),
  polyorder 2), all stay strictly inside nuPlan's comfort bounds (:data:`SMOOTHNESS_BOUNDS`); then the mean over
  routes. Longitudinal / lateral acceleration are the xy acceleration projected on the xy forward / right vectors;
  jerk is the derivative (delta 0.1) of the smoothed xy acceleration magnitude; longitudinal jerk the derivative of
  the longitudinal acceleration; yaw rate the z angular velocity as stored (phase-unwrapped with period 2 pi, not
  converted from CARLA's deg/s, as the tool does); the tool's "yaw acceleration" is the smoothed yaw rate again.

Unknowns of the original tools that the reference does not pin down are decided here and stated: partial credit
changes only the Traffic_Signs count (not the other abilities of the same route); an ability without any route
in the route file is ``None`` and ``mean`` averages the abilities that have routes (the tool divides by zero); a
route whose min-speed percentages are all over 1000 % is skipped; a segment shorter than 3 steps is skipped
(polyorder 2 needs a window of 3).
"""

from __future__ import annotations

import math
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The leaderboard record's keys and arithmetic are defined once in world/ (the embedded world writes results with
# them); the evaluation tools reach them through this module, so the ones this module does not use are re-exported.
from automot.world.leaderboard_record import (  # noqa: F401
    INFRACTION_KEYS,
    global_record,
    infractions_of,
    infractions_per_km,
    km_driven,
    leaderboard_values,
    mean_over_routes,
    score,
)

B2D_ROUTE_COUNT = 220  # Bench2Drive's merge divides by this, whatever the number of records

ABILITIES: dict[str, tuple[str, ...]] = {
    "Overtaking": (
        "Accident",
        "AccidentTwoWays",
        "ConstructionObstacle",
        "ConstructionObstacleTwoWays",
        "HazardAtSideLaneTwoWays",
        "HazardAtSideLane",
        "ParkedObstacleTwoWays",
        "ParkedObstacle",
        "VehicleOpensDoorTwoWays",
    ),
    "Merging": (
        "CrossingBicycleFlow",
        "EnterActorFlow",
        "HighwayExit",
        "InterurbanActorFlow",
        "HighwayCutIn",
        "InterurbanAdvancedActorFlow",
        "MergerIntoSlowTrafficV2",
        "MergerIntoSlowTraffic",
        "NonSignalizedJunctionLeftTurn",
        "NonSignalizedJunctionRightTurn",
        "NonSignalizedJunctionLeftTurnEnterFlow",
        "ParkingExit",
        "SequentialLaneChange",
        "SignalizedJunctionLeftTurn",
        "SignalizedJunctionRightTurn",
        "SignalizedJunctionLeftTurnEnterFlow",
    ),
    "Emergency_Brake": (
        "BlockedIntersection",
        "DynamicObjectCrossing",
        "HardBreakRoute",
        "OppositeVehicleTakingPriority",
        "OppositeVehicleRunningRedLight",
        "ParkingCutIn",
        "PedestrianCrossing",
        "ParkingCrossingPedestrian",
        "StaticCutIn",
        "VehicleTurningRoute",
        "VehicleTurningRoutePedestrian",
        "ControlLoss",
    ),
    "Give_Way": ("InvadingTurn", "YieldToEmergencyVehicle"),
    "Traffic_Signs": (
        "BlockedIntersection",
        "OppositeVehicleTakingPriority",
        "OppositeVehicleRunningRedLight",
        "PedestrianCrossing",
        "VehicleTurningRoute",
        "VehicleTurningRoutePedestrian",
        "EnterActorFlow",
        "CrossingBicycleFlow",
        "NonSignalizedJunctionLeftTurn",
        "NonSignalizedJunctionRightTurn",
        "NonSignalizedJunctionLeftTurnEnterFlow",
        "SignalizedJunctionLeftTurn",
        "SignalizedJunctionRightTurn",
        "SignalizedJunctionLeftTurnEnterFlow",
        "T_Junction",
        "VanillaNonSignalizedTurn",
        "VanillaSignalizedTurnEncounterGreenLight",
        "VanillaSignalizedTurnEncounterRedLight",
        "VanillaNonSignalizedTurnEncounterStopsign",
    ),
}

# nuPlan comfort bounds used by Bench2Drive's smoothness: name -> (low, high), both strict.
SMOOTHNESS_BOUNDS: dict[str, tuple[float, float]] = {
    "lon_acc": (-4.05, 2.40),
    "lat_acc": (-4.89, 4.89),
    "jerk": (-8.37, 8.37),
    "lon_jerk": (-4.13, 4.13),
    "yaw_rate": (-0.95, 0.95),
    "yaw_acc": (-1.93, 1.93),
}
SMOOTHNESS_DT = 0.1
SMOOTHNESS_SEGMENT = 20
SMOOTHNESS_WINDOW = 7
SMOOTHNESS_POLYORDER = 2
EFFICIENCY_MAX_PCT = 1000.0

MAPS_NOTE = (
    "Traffic_Signs computed without partial credit: the CARLA OpenDRIVE maps are not available "
    "(set CARLA_ROOT to a CARLA 0.9.15 install with CarlaUE4/Content/Carla/Maps/OpenDrive/<Town>.xodr)."
)


# ----------------------------------------------------------------------------------------------- records


def is_success(record: Mapping[str, Any]) -> bool:
    """Bench2Drive's success: Completed / Perfect and no infraction other than min-speed ones."""
    if record.get("status") not in ("Completed", "Perfect"):
        return False
    return all(not v for k, v in infractions_of(record).items() if k != "min_speed_infractions")


def xml_route_id(record: Mapping[str, Any]) -> str:
    """``RouteScenario_<id>_rep<k>`` -> ``<id>`` (how ability_benchmark matches records to XML routes)."""
    parts = str(record.get("route_id", "")).split("_")
    return parts[1] if len(parts) > 1 else ""


def repetition_of(record: Mapping[str, Any]) -> int:
    match = re.search(r"_rep(\d+)$", str(record.get("route_id", "")))
    return int(match.group(1)) if match else 0


def driving_score(records: Sequence[Mapping[str, Any]], n_routes: int = B2D_ROUTE_COUNT) -> float:
    return mean_over_routes(records, "score_composed", n_routes)


def success_rate(records: Sequence[Mapping[str, Any]], n_routes: int = B2D_ROUTE_COUNT) -> float:
    """Fraction (0..1), as Bench2Drive's ``success rate``."""
    return sum(is_success(r) for r in records) / n_routes if n_routes > 0 else 0.0


def infraction_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {k: 0 for k in INFRACTION_KEYS}
    for r in records:
        for k, v in infractions_of(r).items():
            counts[k] = counts.get(k, 0) + len(v)
    return counts


# ------------------------------------------------------------------------------------------- efficiency


_PCT = re.compile(r"^(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)%$")


def parse_min_speed_percentage(message: str) -> float | None:
    """``"Average speed is 85.31% of the surrounding traffic's one"`` -> 85.31 (word 3 without its '%')."""
    words = str(message).split(" ")
    if len(words) < 4:
        return None
    match = _PCT.match(words[3])
    return float(match.group(1)) if match else None


def route_efficiency(record: Mapping[str, Any]) -> float | None:
    values = [parse_min_speed_percentage(m) for m in infractions_of(record).get("min_speed_infractions", [])]
    kept = [v for v in values if v is not None and v <= EFFICIENCY_MAX_PCT]
    return sum(kept) / len(kept) if kept else None


def driving_efficiency(records: Sequence[Mapping[str, Any]]) -> float | None:
    per_route = [e for e in (route_efficiency(r) for r in records) if e is not None]
    return sum(per_route) / len(per_route) if per_route else None


# ------------------------------------------------------------------------------------------- smoothness


def _frames(metric_info: Mapping[Any, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    def key(k: Any) -> float:
        try:
            return float(k)
        except (TypeError, ValueError):
            return math.inf

    return [metric_info[k] for k in sorted(metric_info, key=key)]


def phase_unwrap(values: np.ndarray) -> np.ndarray:
    """Remove 2 pi jumps between consecutive values (nuPlan's phase_unwrap)."""
    adjust = np.zeros_like(values)
    adjust[1:] = np.cumsum(np.round(np.diff(values) / (2 * np.pi)))
    return values - 2 * np.pi * adjust


def raw_signals(metric_info: Mapping[Any, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per-step longitudinal / lateral acceleration, xy acceleration magnitude and unwrapped yaw rate."""
    frames = _frames(metric_info)
    acc = np.array([f["acceleration"][:2] for f in frames], dtype=np.float64).reshape(-1, 2)
    fwd = np.array([f["forward_vector"][:2] for f in frames], dtype=np.float64).reshape(-1, 2)
    right = np.array([f["right_vector"][:2] for f in frames], dtype=np.float64).reshape(-1, 2)
    yaw_rate = np.array([f["angular_velocity"][2] for f in frames], dtype=np.float64)
    return {
        "lon_acc": (acc * fwd).sum(-1),
        "lat_acc": (acc * right).sum(-1),
        "acc_norm": np.linalg.norm(acc, axis=-1),
        "yaw_rate": phase_unwrap(yaw_rate) if len(yaw_rate) else yaw_rate,
    }


def segment_signals(raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The six smoothed signals of one segment (see the module docstring)."""
    from scipy.signal import savgol_filter

    n = len(raw["lon_acc"])
    w = min(SMOOTHNESS_WINDOW, n)

    def smooth(x: np.ndarray, deriv: int = 0) -> np.ndarray:
        return savgol_filter(x, window_length=w, polyorder=SMOOTHNESS_POLYORDER, deriv=deriv, delta=SMOOTHNESS_DT)

    yaw_rate = smooth(raw["yaw_rate"])
    return {
        "lon_acc": smooth(raw["lon_acc"]),
        "lat_acc": smooth(raw["lat_acc"]),
        "jerk": smooth(raw["acc_norm"], 1),
        "lon_jerk": smooth(raw["lon_acc"], 1),
        "yaw_rate": yaw_rate,
        "yaw_acc": yaw_rate,  # the tool's "yaw acceleration" is the smoothed yaw rate again
    }


def segment_is_smooth(signals: Mapping[str, np.ndarray]) -> bool:
    for name, (low, high) in SMOOTHNESS_BOUNDS.items():
        x = signals[name]
        if not (np.all(x > low) and np.all(x < high)):
            return False
    return True


def route_smoothness(metric_info: Mapping[Any, Mapping[str, Any]] | None) -> float | None:
    """Share of smooth 20-step segments of one route; ``None`` without usable steps."""
    if not metric_info:
        return None
    raw = raw_signals(metric_info)
    n = len(raw["lon_acc"])
    bounds = (
        [(0, n)]
        if n <= SMOOTHNESS_SEGMENT
        else [(s, s + SMOOTHNESS_SEGMENT) for s in range(0, n - SMOOTHNESS_SEGMENT + 1, SMOOTHNESS_SEGMENT)]
    )
    results = []
    for start, end in bounds:
        if end - start <= SMOOTHNESS_POLYORDER:
            continue
        seg = {k: v[start:end] for k, v in raw.items()}
        results.append(segment_is_smooth(segment_signals(seg)))
    return sum(results) / len(results) if results else None


def smoothness(per_route: Iterable[float | None]) -> float | None:
    values = [v for v in per_route if v is not None]
    return sum(values) / len(values) if values else None


# --------------------------------------------------------------------------------------------- routes


@dataclass
class RouteSpec:
    """One ``<route>`` of a leaderboard route XML."""

    id: str
    town: str = ""
    scenario_types: list[str] = field(default_factory=list)
    keypoints: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def scenario_type(self) -> str | None:
        """The first scenario's type (what Bench2Drive's ability lookup uses)."""
        return self.scenario_types[0] if self.scenario_types else None

    @property
    def abilities(self) -> list[str]:
        return abilities_of(self.scenario_type)


def parse_routes_xml(path: str | os.PathLike) -> list[RouteSpec]:
    """Routes of a leaderboard / Bench2Drive route XML, in file order."""
    root = ET.parse(path).getroot()
    routes = []
    for elem in root.iter("route"):
        route_id = elem.get("id")
        if route_id is None:
            continue
        keypoints = []
        waypoints = elem.find("waypoints")
        if waypoints is not None:
            for pos in waypoints.findall("position"):
                keypoints.append((float(pos.get("x", 0)), float(pos.get("y", 0)), float(pos.get("z", 0))))
        scenarios = elem.find("scenarios")
        types = [s.get("type", "") for s in scenarios.findall("scenario")] if scenarios is not None else []
        routes.append(RouteSpec(str(route_id), elem.get("town", ""), types, keypoints))
    return routes


def abilities_of(scenario_type: str | None) -> list[str]:
    return [name for name, types in ABILITIES.items() if scenario_type in types]


JunctionFn = Callable[[RouteSpec], "tuple[int, int] | None"]  # route -> (k first junction, 1-based; n) or None


def traffic_sign_partial_credit(record: Mapping[str, Any], junction: tuple[int, int] | None) -> bool:
    """A failed Traffic_Signs route counts when RC passed the first junction by 8 waypoints without red/stop."""
    if junction is None:
        return False
    k, n = junction
    if n <= 0:
        return False
    inf = infractions_of(record)
    if inf.get("stop_infraction") or inf.get("red_light"):
        return False
    return score(record, "score_route") / 100 > (k + 8) / n


def ability_scores(
    records: Sequence[Mapping[str, Any]], routes: Sequence[RouteSpec], junction_fn: JunctionFn | None = None
) -> dict[str, Any]:
    """Bench2Drive's ``*_ability.json``: per-ability success ratio, ``mean``, ``crashed``; plus counts and notes."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for r in records:
        by_id.setdefault(xml_route_id(r), r)  # the first matching record, as the tool
    stats = {name: [0, 0] for name in ABILITIES}
    per_scenario: dict[str, list[int]] = {}
    crashed = []
    partial = 0
    for route in routes:
        record = by_id.get(route.id)
        scenario = route.scenario_type
        if record is None:
            crashed.append(route.id)
            continue
        ok = is_success(record)
        for name in abilities_of(scenario):
            counted = ok
            if name == "Traffic_Signs" and not ok and junction_fn is not None:
                counted = traffic_sign_partial_credit(record, junction_fn(route))
                partial += counted
            stats[name][1] += 1
            stats[name][0] += int(counted)
        if scenario is not None:
            s = per_scenario.setdefault(scenario, [0, 0])
            s[0] += int(ok)
            s[1] += 1
    out: dict[str, Any] = {name: (s / t if t else None) for name, (s, t) in stats.items()}
    present = [v for v in out.values() if v is not None]
    out["mean"] = sum(present) / len(present) if present else None
    out["crashed"] = len(crashed)
    notes = [] if junction_fn is not None else [MAPS_NOTE]
    if len(present) < len(ABILITIES):
        empty = ", ".join(name for name, (_, t) in stats.items() if not t)
        notes.append(f"abilities without routes in this route file (left out of the mean): {empty}")
    return {
        "scores": out,
        "counts": {name: {"success": s, "routes": t} for name, (s, t) in stats.items()},
        "per_scenario": {k: {"success": s, "routes": t} for k, (s, t) in per_scenario.items()},
        "crashed_routes": crashed,
        "traffic_sign_partial_credit": junction_fn is not None,
        "partial_credit_routes": partial,
        "notes": notes,
    }


# ------------------------------------------------------------------------------ CARLA maps (optional)


def carla_junction_index(carla_root: str | os.PathLike | None = None) -> JunctionFn | None:
    """A JunctionFn backed by CARLA's OpenDRIVE maps and ``GlobalRoutePlanner(map, 1.0)``, or ``None`` when the
    ``carla`` package, the PythonAPI ``agents`` package or the maps are not available (no server needed)."""
    root = carla_root or os.environ.get("CARLA_ROOT")
    if not root:
        return None
    maps_dir = Path(root) / "CarlaUE4" / "Content" / "Carla" / "Maps" / "OpenDrive"
    if not maps_dir.is_dir():
        return None
    try:
        import carla  # noqa: F401
    except ImportError:
        return None
    try:
        from agents.navigation.global_route_planner import GlobalRoutePlanner  # pyright: ignore[reportMissingImports]  # CARLA's PythonAPI/carla, found at run time
    except ImportError:
        api = Path(root) / "PythonAPI" / "carla"
        if not api.is_dir():
            return None
        sys.path.insert(0, str(api))
        try:
            from agents.navigation.global_route_planner import GlobalRoutePlanner  # pyright: ignore[reportMissingImports]  # CARLA's PythonAPI/carla, found at run time
        except ImportError:
            return None

    planners: dict[str, Any] = {}

    def junction(route: RouteSpec) -> tuple[int, int] | None:
        import carla

        if route.town not in planners:
            xodr = maps_dir / f"{route.town}.xodr"
            if not xodr.is_file():
                planners[route.town] = None
            else:
                planners[route.town] = GlobalRoutePlanner(carla.Map(route.town, xodr.read_text()), 1.0)
        grp = planners[route.town]
        if grp is None or len(route.keypoints) < 2:
            return None
        locs = [carla.Location(x, y, z) for x, y, z in route.keypoints]
        waypoints = []
        for a, b in zip(locs[:-1], locs[1:]):
            waypoints += [wp for wp, _ in grp.trace_route(a, b)]
        for i, wp in enumerate(waypoints):
            if wp.is_junction:
                return i + 1, len(waypoints)
        return None

    return junction
