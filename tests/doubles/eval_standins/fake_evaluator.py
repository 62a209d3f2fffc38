"""Stand-in leaderboard evaluator for the `automot eval` tests: the real evaluator's command line, one route
(``--routes-subset ID``), a real leaderboard-format checkpoint (``--checkpoint``), deterministic scores.

Faults come from the JSON file in AUTOMOT_FAKE_FAULTS: ``{"<route id>": ["crash", "ok"], ...}``, the action of
attempt 1, 2, ... (the last one repeats); attempts are counted in AUTOMOT_FAKE_FAULTS + '.<route id>.count'.
Actions: ``ok``; ``crash`` (exit 1, no record); ``exit3`` (record written, exit 3); ``hang`` (sleep forever);
``sim-crash`` / ``sim-hang`` (tell the server to crash / hang, then the evaluator records "Failed - Simulation
crashed" like the leaderboard does); ``kill-worker`` (SIGKILL the eval worker that started us, then hang);
``slow`` (sleep AUTOMOT_FAKE_SLOW seconds, then ok).
"""

import argparse
import json
import os
import signal
import socket
import sys
import time
import zlib

from automot.world.leaderboard_record import INFRACTION_KEYS  # the records it writes have the real keys


def log_pid():
    path = os.environ.get("AUTOMOT_FAKE_PIDLOG")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()} evaluator\n")


def action_for(route):
    path = os.environ.get("AUTOMOT_FAKE_FAULTS")
    if not path or not os.path.exists(path):
        return "ok"
    with open(path) as fh:
        plan = json.load(fh).get(route) or ["ok"]
    counter = f"{path}.{route}.count"
    with open(counter, "a") as fh:
        fh.write("x")
    attempt = os.path.getsize(counter)
    return plan[min(attempt, len(plan)) - 1]


def tell_server(port, command):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(command.encode() + b"\n")
            s.settimeout(0.5)
            s.recv(64)
    except OSError:
        pass


def record(route, status, score_route, penalty):
    return {
        "index": 0,
        "route_id": f"RouteScenario_{route}_rep0",
        "scenario_name": f"Scenario_{route}",
        "weather_id": "0",
        "save_name": f"RouteScenario_{route}_rep0_standin",
        "town_name": "Town12",
        "status": status,
        "num_infractions": 0 if penalty == 1.0 else 1,
        "infractions": {
            k: ([] if k != "collisions_vehicle" or penalty == 1.0 else ["standin collision"]) for k in INFRACTION_KEYS
        },
        "scores": {
            "score_route": score_route,
            "score_penalty": penalty,
            "score_composed": round(score_route * penalty, 6),
        },
        "meta": {"route_length": 100.0, "duration_game": 10.0, "duration_system": 1.0},
    }


def write(path, route, rec, entry_status="Finished"):
    results = {
        "_checkpoint": {"global_record": {}, "progress": [1, 1], "records": [rec]},
        "entry_status": entry_status,
        "eligible": entry_status == "Finished",
        "sensors": ["carla_camera"],
        "values": [],
        "labels": [],
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(results, fh)
    os.replace(tmp, path)


def _planned(key):
    path = os.environ.get("AUTOMOT_FAKE_FAULTS")
    if not path or not os.path.exists(path):
        return False
    with open(path) as fh:
        return key in json.load(fh)


def main():
    log_pid()
    p = argparse.ArgumentParser()
    for flag in ("--routes", "--routes-subset", "--checkpoint", "--agent", "--agent-config", "--track", "--host",
                 "--debug-checkpoint", "--repetitions", "--resume", "--timeout", "--traffic-manager-seed",
                 "--record", "--debug", "--gpu-rank"):  # fmt: skip
        p.add_argument(flag)
    p.add_argument("--port", type=int, default=2000)
    p.add_argument("--traffic-manager-port", type=int, default=8000)
    args = p.parse_args()
    route = args.routes_subset
    argv_log = os.environ.get("AUTOMOT_FAKE_ARGVLOG")
    if argv_log:  # the seed tests read the command lines back
        with open(argv_log, "a") as fh:
            fh.write(json.dumps(sys.argv[1:]) + "\n")
    seed = args.traffic_manager_seed
    # faults per (route, seed) job when the plan names "<route>_seed<k>", else per route
    action = action_for(f"{route}_seed{seed}" if seed is not None and _planned(f"{route}_seed{seed}") else route)
    # the server must answer, as the real evaluator's first carla.Client call
    try:
        socket.create_connection(("127.0.0.1", args.port), timeout=2).close()
    except OSError:
        sys.exit(4)
    h = zlib.crc32(route.encode() + (b"" if seed is None else f"/{seed}".encode()))  # the seed changes the score
    score_route = float(40 + h % 61)
    penalty = [1.0, 0.7, 0.6, 0.5][h % 4]
    status = "Completed" if score_route == 100 and penalty == 1.0 else "Failed"
    if action == "crash":
        sys.exit(1)
    if action == "hang":
        time.sleep(3600)
    if action == "kill-worker":
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(3600)
    if action == "slow":
        time.sleep(float(os.environ.get("AUTOMOT_FAKE_SLOW", "2")))
    if action in ("sim-crash", "sim-hang"):
        tell_server(args.port, action[4:])
        write(args.checkpoint, route, record(route, "Failed - Simulation crashed", 0.0, 1.0), "Crashed")
        sys.exit(0)
    write(args.checkpoint, route, record(route, status, score_route, penalty))
    if action == "exit3":
        sys.exit(3)
    sys.exit(0)


if __name__ == "__main__":
    main()
