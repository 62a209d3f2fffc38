"""Closed-loop table for the README: privileged expert, random-init model, trained demo model (with and
without the refiner), one run per embedded route with fixed seeds.

    python scripts/closed_loop_table.py --checkpoint checkpoints/tiny_demo --out runs/closed_loop

Writes ``OUT/table.json`` and ``OUT/table.md`` (DS, RC, infractions per agent and route, plus means).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automot.fsio import atomic_write_text  # noqa: E402
from automot.world.routes import list_routes  # noqa: E402
from automot.world.runner import run_route  # noqa: E402

AGENT = str(REPO / "agent" / "automot_agent.py")
EXPERT = str(REPO / "world" / "expert_agent.py")
BASE_CONFIG = REPO / "leaderboard_configs" / "demo_tiny.yaml"


def agent_config(out: Path, name: str, checkpoint: str, random_init: bool, refiner: bool) -> str:
    """A demo agent YAML variant: same rig, controllers and runtime; recorder off (speed)."""
    cfg = yaml.safe_load(BASE_CONFIG.read_text())
    cfg["model"]["checkpoint"] = None if random_init else str(Path(checkpoint).resolve())
    # Random init of the very same network: the checkpoint's own config.yaml as the preset.
    cfg["model"]["preset"] = str((Path(checkpoint) / "config.yaml").resolve())
    cfg["model"]["refiner"] = refiner
    cfg["recorder"] = {"video": False, "ticks_jsonl": False}
    path = out / f"{name}.yaml"
    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def infraction_summary(record: dict) -> str:
    parts = [f"{k} x{len(v)}" for k, v in record["infractions"].items() if v]
    return ", ".join(parts) or "none"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "tiny_demo"))
    p.add_argument("--out", default="runs/closed_loop")
    p.add_argument("--routes", nargs="*", default=None)
    p.add_argument("--seed", type=int, default=100, help="fixed seed for every run (not a training seed)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.pop("AUTOMOT_RECORD_DIR", None)
    agents = {
        "expert (privileged)": (EXPERT, ""),
        "random-init model": (AGENT, agent_config(out, "random", args.checkpoint, True, False)),
        "trained tiny model": (AGENT, agent_config(out, "trained", args.checkpoint, False, False)),
        "trained + refiner": (AGENT, agent_config(out, "refiner", args.checkpoint, False, True)),
    }
    routes = args.routes or list_routes()
    rows = []
    for agent_name, (path, config) in agents.items():
        for route in routes:
            run_dir = out / agent_name.split()[0].replace("+", "") / route
            res = run_route(route, path, config, run_dir, seed=args.seed, progress=False)
            rec = res["_checkpoint"]["records"][0]
            row = {
                "agent": agent_name,
                "route": route,
                "seed": args.seed,
                "status": rec["status"],
                "DS": round(rec["scores"]["score_composed"], 2),
                "RC": round(rec["scores"]["score_route"], 2),
                "penalty": round(rec["scores"]["score_penalty"], 3),
                "infractions": infraction_summary(rec),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    means = {name: round(sum(r["DS"] for r in rows if r["agent"] == name) / len(routes), 2) for name in agents}
    atomic_write_text(out / "table.json", json.dumps({"rows": rows, "mean_DS": means}, indent=2))
    lines = ["| agent | route | DS | RC | infractions |", "|---|---|---|---|---|"]
    lines += [f"| {r['agent']} | {r['route']} | {r['DS']:.1f} | {r['RC']:.1f} | {r['infractions']} |" for r in rows]
    lines += ["", "| agent | mean DS |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in means.items()]
    atomic_write_text(out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
