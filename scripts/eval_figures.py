"""Figures for the note on `automot eval` (issue #13): the embedded routes x seeds with 1 and with 2 Ray workers.

    python scripts/eval_figures.py --out runs/eval_figures [--seeds 0-4] [--ticks N] [--workers 1,2]

For each worker count it runs ``automot eval --world embedded --routes all --seeds S --workers K`` into
``OUT/workers<K>/`` (a fresh local Ray instance each time) and reads back:

* wall time: the eval's own (``.eval/last_run.json``, from the first route handed out to the last recorded; Ray's
  start-up is not in it) and the whole process's;
* scheduler overhead per route: ``(wall x K - sum of the routes' in-task wall times) / routes``, i.e. the worker
  time per route not spent driving (Ray task dispatch, result return, idle slots at the tail);
* the makespan against its lower bound max(sum of route walls / workers, longest route) (goal: <= 1.1 x bound
  + 5 s);
* the driving score per route, mean +- std over the seeds (from the first worker count's run).

Writes ``OUT/figures.json`` and ``OUT/figures.md`` (atomically) and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from automot.fsio import atomic_write_json, atomic_write_text


def run(out: Path, workers: int, seeds: str, ticks: int | None) -> dict:
    cmd = [sys.executable, "-m", "automot.cli", "eval", "--world", "embedded", "--routes", "all"]
    cmd += ["--seeds", seeds, "--workers", str(workers), "--out", str(out), "--progress-every", "60"]
    if ticks:
        cmd += ["--ticks", str(ticks)]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    process_wall = time.monotonic() - t0
    last = json.loads((out / ".eval" / "last_run.json").read_text())
    routes = last["routes_run"]
    busy = sum(r["wall_s"] for r in routes)
    # No schedule of these routes on `workers` workers can end before this (issue 21.7): the work spread evenly,
    # or the longest route alone.
    bound = max(busy / workers, max((r["wall_s"] for r in routes), default=0.0))
    return {
        "workers": workers,
        "routes": len(routes),
        "eval_wall_s": last["wall_s"],
        "process_wall_s": round(process_wall, 3),
        "sum_route_wall_s": round(busy, 3),
        "overhead_per_route_s": round((last["wall_s"] * workers - busy) / max(len(routes), 1), 3),
        "lower_bound_s": round(bound, 3),
        "makespan_over_bound": round(last["wall_s"] / bound, 3) if bound else None,
        "goal_met": last["wall_s"] <= 1.1 * bound + 5.0,  # makespan <= 1.1 x bound + 5 s
        "scores": {r["job_id"]: r["score"] for r in routes},
    }


def ds_table(scores: dict[str, float]) -> dict[str, dict]:
    by_route: dict[str, list[float]] = {}
    for job_id, score in scores.items():
        by_route.setdefault(job_id.rsplit("_seed", 1)[0], []).append(score)
    table = {}
    for route, values in sorted(by_route.items()):
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        table[route] = {"mean": round(statistics.fmean(values), 2), "std": round(std, 2), "n": len(values)}
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--ticks", type=int, help="tick limit per route (default: the routes' own)")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    out = Path(args.out)
    runs = [run(out / f"workers{k}", int(k), args.seeds, args.ticks) for k in args.workers.split(",")]
    base = runs[0]
    table = ds_table(base["scores"])
    figures = {
        "seeds": args.seeds,
        "ticks": args.ticks,
        "runs": [{k: v for k, v in r.items() if k != "scores"} for r in runs],
        "speedup": {
            f"{r['workers']}_vs_{base['workers']}": round(base["eval_wall_s"] / r["eval_wall_s"], 3) for r in runs
        },
        "ds_table": table,
    }
    lines = [
        f"Embedded routes x seeds {args.seeds}, ticks {args.ticks or 'route default'}",
        "",
        "| Ray workers | routes | makespan (s) | lower bound (s) | makespan / bound | <= 1.1 x bound + 5 s "
        "| process wall (s) | sum of route walls (s) | overhead / route (s) |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['workers']} | {r['routes']} | {r['eval_wall_s']:.1f} | {r['lower_bound_s']:.1f} | "
            f"{r['makespan_over_bound']:.2f} | {'yes' if r['goal_met'] else 'no'} | {r['process_wall_s']:.1f} | "
            f"{r['sum_route_wall_s']:.1f} | {r['overhead_per_route_s']:.2f} |"
        )
    lines += ["", "speed-up: " + ", ".join(f"{k}: {v:.2f}x" for k, v in figures["speedup"].items()), ""]
    lines += ["| route | DS mean | DS std | seeds |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {row['mean']:.2f} | {row['std']:.2f} | {row['n']} |" for name, row in table.items()]
    text = "\n".join(lines) + "\n"
    atomic_write_json(out / "figures.json", figures)
    atomic_write_text(out / "figures.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
