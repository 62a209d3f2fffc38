"""Time merge + report + compare over synthetic records at Bench2Drive's size (issue 21: <= 15 s on the project's
2-core machine). Not a test: timings depend on the machine and its load, so they are printed, never asserted.

    python scripts/bench_eval_pipeline.py [--routes 220] [--seeds 3] [--out DIR]

Builds two evaluation folders A and B of ``routes x seeds`` leaderboard-format records (``DIR/routes/<id>_seed<k>/
results.json``, scores drawn from a fixed generator; B is A with every fifth route 30 DS worse), a route XML with
Bench2Drive scenario types, then times ``merge_eval`` (with the uncertainty), ``write_report`` (plots, triage without
videos) and ``compare_folders`` + ``write_compare`` separately and together.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from automot.evaluation.compare import compare_folders, write_compare
from automot.evaluation.merge import merge_eval
from automot.evaluation.report import write_report
from automot.world.leaderboard_record import INFRACTION_KEYS

TYPES = ("ParkedObstacle", "HardBreakRoute", "SignalizedJunctionLeftTurn", "PedestrianCrossing", "InvadingTurn")


def build(root: Path, name: str, routes: int, seeds: int, worse_every: int | None) -> tuple[Path, list[str]]:
    rng = random.Random(7)  # the same draws for A and B: B differs only where planted
    out = root / name
    ids = []
    for r in range(routes):
        for s in range(seeds):
            ds = rng.choice([100.0, 100.0, 85.0, 60.0, 30.0, 0.0])
            if worse_every and r % worse_every == 0:
                ds = max(0.0, ds - 30.0)
            folder = out / "routes" / f"{1000 + r}_seed{s}"
            folder.mkdir(parents=True)
            inf = {k: [] for k in INFRACTION_KEYS}
            ok = ds == 100.0
            if not ok:
                inf["collisions_vehicle"] = [f"Agent collided against object with id=3 at (x={r}.0, y=0.0, z=0.0)"]
            rec = {
                "index": 0,
                "route_id": f"RouteScenario_{1000 + r}_rep0",
                "scenario_name": TYPES[r % len(TYPES)],
                "weather_id": "0",
                "save_name": "",
                "town_name": "Town12",
                "status": "Completed" if ok else "Failed - Agent got blocked",
                "num_infractions": 0 if ok else 1,
                "infractions": inf,
                "scores": {"score_route": 100.0 if ok else ds, "score_penalty": 1.0, "score_composed": ds},
                "meta": {"route_length": 800.0, "duration_game": 120.0, "duration_system": 300.0},
            }
            data = {"_checkpoint": {"global_record": {}, "progress": [1, 1], "records": [rec]}, "sensors": []}
            (folder / "results.json").write_text(json.dumps(data))
            ids.append(folder.name)
    return out, ids


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--routes", type=int, default=220)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", help="keep the folders here (default: a temporary folder)")
    args = p.parse_args()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="automot-bench-eval-"))
    root.mkdir(parents=True, exist_ok=True)
    xml = root / "routes.xml"
    rows = [
        f'<route id="{1000 + r}" town="Town12"><scenarios><scenario name="s" type="{TYPES[r % len(TYPES)]}"/>'
        "</scenarios></route>"
        for r in range(args.routes)
    ]
    xml.write_text("<routes>\n" + "\n".join(rows) + "\n</routes>\n")
    a, ids = build(root, "A", args.routes, args.seeds, None)
    b, _ = build(root, "B", args.routes, args.seeds, 5)
    times = {}
    t0 = time.perf_counter()
    for folder in (a, b):
        merge_eval(folder, ids, routes_xml=xml)
    times["merge (2 folders)"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    write_report(a)
    times["report (1 folder)"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    result = compare_folders(a, b, out=root / "C")
    write_compare(result, root / "C")
    times["compare"] = time.perf_counter() - t2
    times["merge A + report A + compare"] = (
        times["merge (2 folders)"] / 2 + times["report (1 folder)"] + times["compare"]
    )
    print(f"{args.routes} routes x {args.seeds} seeds = {len(ids)} jobs per folder ({root})")
    for k, v in times.items():
        print(f"  {k:32s} {v:7.2f} s")
    print(f"  verdict: {result['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
