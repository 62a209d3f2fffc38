"""The leaderboard's results.json arithmetic, defined once for the embedded world (automot.world.scoring writes
results with it) and for the evaluation tools (automot.evaluation.metrics reads results with it): the infraction
keys of a route record, the penalty per infraction, the ``values`` / ``labels`` order and the global record.

The rules are written down in docs/bench2drive-metrics.md (with the upstream files they come from).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# The ``infractions`` keys of every route record, in the order the leaderboard writes them.
INFRACTION_KEYS = (
    "collisions_layout",
    "collisions_pedestrian",
    "collisions_vehicle",
    "red_light",
    "stop_infraction",
    "outside_route_lanes",
    "min_speed_infractions",
    "yield_emergency_vehicle_infractions",
    "scenario_timeouts",
    "route_dev",
    "vehicle_blocked",
    "route_timeout",
)
# Multiplier on score_penalty per infraction (Bench2Drive, docs/bench2drive-metrics.md "Penalties"); the keys not
# listed either end the route or (outside_route_lanes) scale by the share of the route driven outside.
PENALTY = {
    "collisions_pedestrian": 0.5,
    "collisions_vehicle": 0.6,
    "collisions_layout": 0.65,
    "red_light": 0.7,
    "stop_infraction": 0.8,
    "scenario_timeouts": 0.7,
    "yield_emergency_vehicle_infractions": 0.7,
}
# (key, label) in the order of the results' ``values`` / ``labels`` lists: the three score means, then the
# infractions per km.
LABELS = (
    ("score_composed", "Avg. driving score"),
    ("score_route", "Avg. route completion"),
    ("score_penalty", "Avg. infraction penalty"),
    ("collisions_pedestrian", "Collisions with pedestrians"),
    ("collisions_vehicle", "Collisions with vehicles"),
    ("collisions_layout", "Collisions with layout"),
    ("red_light", "Red lights infractions"),
    ("stop_infraction", "Stop sign infractions"),
    ("outside_route_lanes", "Off-road infractions"),
    ("route_dev", "Route deviations"),
    ("route_timeout", "Route timeouts"),
    ("vehicle_blocked", "Agent blocked"),
    ("yield_emergency_vehicle_infractions", "Yield emergency vehicles infractions"),
    ("scenario_timeouts", "Scenario timeouts"),
    ("min_speed_infractions", "Min speed infractions"),
)
SCORE_KEYS = ("score_composed", "score_route", "score_penalty")


def score(record: Mapping[str, Any], key: str = "score_composed") -> float:
    return float((record.get("scores") or {}).get(key, 0.0) or 0.0)


def infractions_of(record: Mapping[str, Any]) -> dict[str, list]:
    found = record.get("infractions") or {}
    return {k: list(v) for k, v in found.items() if isinstance(v, list)}


def mean_over_routes(records: Sequence[Mapping[str, Any]], key: str, n_routes: int) -> float:
    """Sum of ``scores[key]`` / ``n_routes`` (missing routes count 0)."""
    return sum(score(r, key) for r in records) / n_routes if n_routes > 0 else 0.0


def outside_lanes_km(message: str) -> float:
    """Kilometres in an ``outside_route_lanes`` message (the leaderboard reads word 8, metres)."""
    return float(str(message).split(" ")[8]) / 1000


def km_driven(records: Sequence[Mapping[str, Any]]) -> float:
    total = sum(
        float((r.get("meta") or {}).get("route_length", 0.0) or 0.0) / 1000 * score(r, "score_route") / 100
        for r in records
    )
    return max(total, 0.001)


def infractions_per_km(records: Sequence[Mapping[str, Any]], digits: int | None = 3) -> dict[str, float]:
    """The leaderboard's ``global_record.infractions``."""
    km = km_driven(records)
    out: dict[str, float] = {}
    for key in INFRACTION_KEYS:
        if key == "outside_route_lanes":
            value = sum(outside_lanes_km(infractions_of(r)[key][0]) for r in records if infractions_of(r).get(key))
        else:
            value = sum(len(infractions_of(r).get(key, [])) for r in records) / km
        out[key] = round(value, digits) if digits is not None else value
    return out


def global_record(records: Sequence[Mapping[str, Any]], n_routes: int) -> dict[str, Any]:
    """The leaderboard's ``_checkpoint.global_record`` over ``n_routes`` (missing routes count 0 in the means)."""
    n = max(n_routes, 1)
    means = {k: round(mean_over_routes(records, k, n), 6) for k in SCORE_KEYS}
    std = {k: 0.0 for k in means}
    if n > 1:
        for k in std:
            var = sum((score(r, k) - means[k]) ** 2 for r in records) / float(n - 1)
            std[k] = round(math.sqrt(var), 3)
    status = "Perfect"
    exceptions = []
    for r in records:
        if "Failed" in str(r.get("status", "")):
            status = "Failed"
            exceptions.append((r.get("route_id"), r.get("index"), r.get("status")))
        elif status == "Perfect" and r.get("status") != "Perfect":
            status = r.get("status")
    meta = [r.get("meta") or {} for r in records]
    return {
        "index": -1,
        "route_id": -1,
        "status": status,
        "infractions": infractions_per_km(records),
        "scores_mean": means,
        "scores_std_dev": std,
        "meta": {
            "total_length": round(sum(float(m.get("route_length", 0) or 0) for m in meta), 3),
            "duration_game": round(sum(float(m.get("duration_game", 0) or 0) for m in meta), 3),
            "duration_system": round(sum(float(m.get("duration_system", 0) or 0) for m in meta), 3),
            "exceptions": exceptions,
        },
    }


def leaderboard_values(glob: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The leaderboard's ``values`` and ``labels`` lists from a global record."""
    values, labels = [], []
    for key, label in LABELS:
        value = glob["scores_mean"][key] if key.startswith("score_") else glob["infractions"][key]
        values.append(str(value))
        labels.append(label)
    return values, labels
