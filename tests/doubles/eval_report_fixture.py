"""A small, hand-made evaluation folder (DIR/routes/<id>/ as `automot eval` writes it) for the report tests:
8 routes of Bench2Drive scenario types, one with no record, one crashed after retries, real tiny mp4 videos.

Expected summary values (worked out by hand from the records below, over the 8 routes of the route file):
DS = (100 + 100 + 60 + 42 + 65 + 0 + 100 + 0) / 8 = 58.375; SR = 3 / 8 (routes 101, 102, 107);
RC = (100 + 100 + 100 + 60 + 100 + 0 + 100 + 0) / 8 = 70.0.
"""

from __future__ import annotations

import json
from pathlib import Path

from automot.world.leaderboard_record import INFRACTION_KEYS

# id, scenario type, status, RC, penalty, infractions {key: [(message x, y)]}
ROUTES = [
    ("101", "ParkedObstacle", "Perfect", 100.0, 1.0, {}),
    ("102", "HardBreakRoute", "Completed", 100.0, 1.0, {}),
    ("103", "SignalizedJunctionLeftTurn", "Completed", 100.0, 0.6, {"collisions_vehicle": [(40.0, 0.0)]}),
    ("104", "PedestrianCrossing", "Failed - Agent got blocked", 60.0, 0.7, {"red_light": [(22.0, 1.0)]}),
    ("105", "YieldToEmergencyVehicle", "Completed", 100.0, 0.65, {"collisions_layout": [(70.0, 0.0)]}),
    ("106", "InvadingTurn", "Failed - Simulation crashed", 0.0, 1.0, {}),
    ("107", "Accident", "Perfect", 100.0, 1.0, {}),
    ("108", "HighwayExit", None, 0.0, 0.0, {}),  # no record: missing
]
EXPECTED = {"Driving score": "58.38", "Success rate": "37.50%", "Route completion": "70.00"}

MESSAGES = {
    "collisions_vehicle": "Agent collided against object with type=vehicle.tesla.model3 and id=42 at (x={x}, y={y}, z=0.0)",
    "collisions_layout": "Agent collided against object with type=static.prop and id=7 at (x={x}, y={y}, z=0.0)",
    "red_light": "Agent ran a red light 31 at (x={x}, y={y}, z=0.0)",
}


def _video(path: Path, shade: int) -> None:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(10):
        frame = np.full((48, 64, 3), shade, np.uint8)
        frame[:, (i * 6) % 64 :, 1] = 200
        writer.write(frame)
    writer.release()


def build_eval_dir(root: Path) -> tuple[Path, Path]:
    """(DIR, route XML) with the routes above."""
    out = root / "eval"
    xml = ["<routes>"]
    for i, (rid, scenario, status, rc, penalty, infractions) in enumerate(ROUTES):
        xml.append(
            f'  <route id="{rid}" town="Town0{1 + i % 3}"><waypoints><position x="0" y="0" z="0"/>'
            f'<position x="100" y="0" z="0"/></waypoints><scenarios><scenario name="{scenario}_1" type="{scenario}"/>'
            "</scenarios></route>"
        )
        if status is None:
            continue
        folder = out / "routes" / rid
        folder.mkdir(parents=True)
        inf = {k: [] for k in INFRACTION_KEYS}
        for key, places in infractions.items():
            inf[key] = [MESSAGES[key].format(x=x, y=y) for x, y in places]
        if rc > 0:
            inf["min_speed_infractions"] = [f"Average speed is {80 + i}.5% of the surrounding traffic's one"]
        record = {
            "index": 0,
            "route_id": f"RouteScenario_{rid}_rep0",
            "scenario_name": f"{scenario}_1",
            "weather_id": "3",
            "save_name": f"RouteScenario_{rid}_rep0_Town01_{scenario}_3_12_06_05_00_00",
            "town_name": "Town01",
            "status": status,
            "num_infractions": sum(len(v) for v in inf.values()),
            "infractions": inf,
            "scores": {"score_route": rc, "score_penalty": penalty, "score_composed": round(rc * penalty, 6)},
            "meta": {"route_length": 100.0 + 10 * i, "duration_game": 30.0, "duration_system": 40.0},
        }
        results = {
            "_checkpoint": {"global_record": {}, "progress": [1, 1], "records": [record]},
            "entry_status": "Finished",
            "eligible": True,
            "sensors": ["sensor.camera.rgb"],
            "values": [],
            "labels": [],
        }
        (folder / "results.json").write_text(json.dumps(results))
        (folder / "record.json").write_text(
            json.dumps(
                {
                    "job_id": rid,
                    "attempts": 3 if "crashed" in status else 1,
                    "failure_reason": "simulator exited (code -11) on 3 attempts" if "crashed" in status else None,
                }
            )
        )
        if rc > 0:  # the ego drives along +x at 5 m/s, 10 Hz ticks
            ticks = [{"frame": k, "sim_time": 0.1 * k, "ego": {"x": 0.5 * k, "y": 0.0, "yaw": 0.0}} for k in range(200)]
            (folder / "ticks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
            _video(folder / "video.mp4", 40 + 20 * i)
            info = {
                str(k): {
                    "acceleration": [0.5 if k % 40 < 30 else 3.0 * (i % 2), 0.0, 0.0],
                    "angular_velocity": [0.0, 0.0, 0.1],
                    "forward_vector": [1.0, 0.0, 0.0],
                    "right_vector": [0.0, 1.0, 0.0],
                    "location": [0.5 * k, 0.0, 0.0],
                    "rotation": [0.0, 0.0, 0.0],
                }
                for k in range(80)
            }
            (folder / "metric_info.json").write_text(json.dumps(info))
    xml.append("</routes>")
    path = root / "routes.xml"
    path.write_text("\n".join(xml) + "\n")
    return out, path
