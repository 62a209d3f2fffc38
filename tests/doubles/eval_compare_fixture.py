"""Hand-made evaluation folders for `automot eval compare` and the uncertainty tests: ``DIR/routes/<id>_seed<k>/``
with one leaderboard-format record each (as `automot eval` writes them), a route XML, then `merge_eval`.

``build(root, name, jobs, xml)`` where ``jobs`` maps (route id, seed) -> (DS, success) and, optionally, a video.
A successful job is ``Completed`` with RC 100 and penalty DS / 100; a failed one ``Failed - Agent got blocked``
with RC = DS and penalty 1 (so DS = RC x penalty holds for both, as in the leaderboard).
"""

from __future__ import annotations

import json
from pathlib import Path

from automot.evaluation.merge import merge_eval
from automot.world.scoring import INFRACTION_KEYS

SCENARIOS = ("ParkedObstacle", "HardBreakRoute", "SignalizedJunctionLeftTurn", "PedestrianCrossing")


def route_xml(root: Path, route_ids: list[str], name: str = "routes.xml") -> Path:
    lines = ["<routes>"]
    for i, rid in enumerate(route_ids):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        lines.append(
            f'  <route id="{rid}" town="Town01"><waypoints><position x="0" y="0" z="0"/><position x="1000" y="0" '
            f'z="0"/></waypoints><scenarios><scenario name="{scenario}_1" type="{scenario}"/></scenarios></route>'
        )
    lines.append("</routes>")
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _video(path: Path, shade: int) -> None:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 24))
    for _ in range(5):
        writer.write(np.full((24, 32, 3), shade, np.uint8))
    writer.release()


def build(
    root: Path, name: str, jobs: dict[tuple[str, int], tuple[float, bool]], xml: Path, videos: bool = False
) -> Path:
    out = root / name
    for (rid, seed), (ds, success) in jobs.items():
        folder = out / "routes" / f"{rid}_seed{seed}"
        folder.mkdir(parents=True)
        inf = {k: [] for k in INFRACTION_KEYS}
        if success:
            status, rc, penalty = "Completed", 100.0, ds / 100.0
        else:
            status, rc, penalty = "Failed - Agent got blocked", ds, 1.0
            inf["vehicle_blocked"] = ["Agent got blocked at (x=10.0, y=0.0, z=0.0)"]
        record = {
            "index": 0,
            "route_id": f"RouteScenario_{rid}_rep0",
            "scenario_name": "s",
            "weather_id": "0",
            "save_name": f"RouteScenario_{rid}_rep0_Town01_s_0",
            "town_name": "Town01",
            "status": status,
            "num_infractions": sum(len(v) for v in inf.values()),
            "infractions": inf,
            "scores": {"score_route": rc, "score_penalty": penalty, "score_composed": ds},
            "meta": {"route_length": 1000.0, "duration_game": 60.0, "duration_system": 60.0},
        }
        results = {"_checkpoint": {"global_record": {}, "progress": [1, 1], "records": [record]}, "sensors": []}
        (folder / "results.json").write_text(json.dumps(results))
        if videos:
            _video(folder / "video.mp4", 30 + (7 * seed) % 200)
    merge_eval(out, [f"{rid}_seed{seed}" for rid, seed in jobs], routes_xml=xml)
    return out
