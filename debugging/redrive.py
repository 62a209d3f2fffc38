"""``automot redrive RUN --from-tick N (--checkpoint DIR | --set KEY=VALUE ...) --out D``: a counterfactual re-drive.

The embedded world is re-simulated from the run's route, seed and tick cap (``meta.command`` of its record) with the
run's recorded controls applied up to tick N, every tick's ego and actor state checked against the run's
world.jsonl (a mismatch stops with exit 4: the world was not deterministic), then the other agent (the run's
agent config with ``--checkpoint`` / ``--set`` applied; it runs from tick 0 so its buffers and state are warm, but
its control is only applied from N on) drives on in closed loop. D gets the usual run files (results.json,
ticks.jsonl, world.jsonl, video.mp4, agent_config.yaml), ``redrive.json`` and ``side_by_side.mp4`` (the run | the
re-drive). CARLA runs cannot be re-driven: the server's physics and traffic manager cannot be re-simulated from a
run's files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

from automot import clikit
from automot.agent.world_record import WORLD_NAME, read_world
from automot.debugging.collision_story import find_world_log
from automot.debugging.runfiles import RunFolderError, load_run
from automot.errors import CheckFailed, UsageError
from automot.fsio import atomic_write_json

AGENT_FILE = str(Path(__file__).resolve().with_name("redrive_agent.py"))
REDRIVE_JSON = "redrive.json"
SIDE_BY_SIDE = "side_by_side.mp4"
STATE_TOL_M = 1e-3  # ego positions further apart than this (world.jsonl precision) mean the drives diverged
_WHO = re.compile(r"id=(\d+)")

PLAN_ENV = "AUTOMOT_REDRIVE_PLAN"
EGO_KEYS = (("x", 4), ("y", 4), ("yaw", 5), ("speed", 4))
ACTOR_KEYS = (("x", 3), ("y", 3), ("yaw", 4), ("speed", 3))


class WorldDiverged(RuntimeError):
    """The re-simulated world is not the recorded one at a tick before the hand-over."""


def check_state(tick: int, recorded: dict[str, Any], snapshot: dict[str, Any]) -> None:
    """Equal at the recorded precision (both sides rounded the same way), else WorldDiverged naming the field."""
    for key, nd in EGO_KEYS:
        a, b = round(float(snapshot["ego"][key]), nd), round(float(recorded["ego"][key]), nd)
        if a != b:
            raise WorldDiverged(f"tick {tick}: ego {key} {a} != recorded {b}")
    mine = {a["id"]: a for a in snapshot.get("actors") or []}
    theirs = {a["id"]: a for a in recorded.get("actors") or []}
    if set(mine) != set(theirs):
        raise WorldDiverged(f"tick {tick}: actors {sorted(mine)} != recorded {sorted(theirs)}")
    for actor_id, rec in theirs.items():
        for key, nd in ACTOR_KEYS:
            a, b = round(float(mine[actor_id][key]), nd), round(float(rec[key]), nd)
            if a != b:
                raise WorldDiverged(f"tick {tick}: actor {actor_id} {key} {a} != recorded {b}")


def route_of(record: dict[str, Any], ticks: int) -> tuple[str, int | None, int | None]:
    """(route, seed, tick cap) of a run: from its reproduce command, else its scenario name and the route's seed."""
    command = (record.get("meta") or {}).get("command")
    if command:
        parts = shlex.split(command)

        def opt(name: str) -> str | None:
            return parts[parts.index(name) + 1] if name in parts else None

        seed, cap = opt("--seed"), opt("--ticks")
        return opt("--route") or record.get("scenario_name"), int(seed) if seed else None, int(cap) if cap else None
    cap = ticks if str(record.get("status", "")).startswith("Stopped") else None
    return record.get("scenario_name"), None, cap


def _ego_gap(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float:
    if a is None or b is None:
        return math.inf
    return math.hypot(a["ego"]["x"] - b["ego"]["x"], a["ego"]["y"] - b["ego"]["y"])


def _infractions(record: dict[str, Any] | None) -> list[tuple[str, str | None, str]]:
    """(kind, other actor id or None, message) of every penalised infraction (min-speed readings left out)."""
    out = []
    for kind, items in ((record or {}).get("infractions") or {}).items():
        if kind == "min_speed_infractions":
            continue
        for message in items or []:
            m = _WHO.search(str(message)) if kind.startswith("collisions") else None
            out.append((kind, m.group(1) if m else None, str(message)))
    return out


def compare_runs(run_dir: Path, out: Path, from_tick: int) -> dict[str, Any]:
    """redrive.json's comparison of the run and the re-drive in ``out``."""
    original, redriven = load_run(run_dir), load_run(out)
    wa_path = find_world_log(Path(original.folder), original.ticks_path)
    _, wa = read_world(wa_path) if wa_path else (None, {})
    _, wb = read_world(out / WORLD_NAME) if (out / WORLD_NAME).is_file() else (None, {})
    divergence = next(
        (f for f in sorted(set(wa) | set(wb)) if f >= from_tick and _ego_gap(wa.get(f), wb.get(f)) > STATE_TOL_M),
        None,
    )
    ca = {int(t["frame"]): t.get("control") for t in original.ticks}
    cb = {int(t["frame"]): t.get("control") for t in redriven.ticks}
    keys = ("steer", "throttle", "brake")
    control_divergence = next(
        (f for f in sorted(ca) if f >= from_tick and (ca[f] or {}).get("steer") is not None
         and f in cb and any((ca[f] or {}).get(k) != (cb[f] or {}).get(k) for k in keys)),
        None,
    )  # fmt: skip
    new = _infractions(redriven.record)
    still = [
        {"kind": kind, "other_actor_id": who, "message": message,
         "still_happens": any(k == kind and (who is None or w == who) for k, w, _ in new)}
        for kind, who, message in _infractions(original.record)
    ]  # fmt: skip

    def side(run: Any) -> dict[str, Any]:
        return {"status": run.status, "ds": run.scores["ds"], "rc": run.scores["rc"], "ticks": len(run.ticks)}

    return {
        "divergence_tick": divergence,
        "control_divergence_tick": control_divergence,
        "infractions": still,
        "new_infractions": [
            m for k, w, m in new if not any(k == i["kind"] and w == i["other_actor_id"] for i in still)
        ],
        "original": side(original),
        "redrive": side(redriven),
    }


def write_side_by_side(left: Path, right: Path, path: Path, fps: float = 20.0) -> int:
    """The two videos frame by frame, side by side (the shorter one ends first: its last frame is held)."""
    import cv2
    import imageio.v2 as imageio
    import numpy as np

    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    readers = [imageio.get_reader(str(p), format="FFMPEG") for p in (left, right)]
    frames = 0
    try:
        writer = imageio.get_writer(
            str(tmp), format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
            macro_block_size=16, ffmpeg_log_level="error", output_params=["-preset", "veryfast"],
        )  # fmt: skip
        try:
            its, last = [iter(r) for r in readers], [None, None]
            while True:
                got = [next(it, None) for it in its]
                if all(g is None for g in got):
                    break
                last = [np.asarray(g) if g is not None else prev for g, prev in zip(got, last)]
                h = max(f.shape[0] for f in last if f is not None)
                sides = []
                for label, f in zip(("run", "re-drive"), last):
                    f = (
                        np.zeros((h, 16, 3), np.uint8)
                        if f is None
                        else cv2.resize(f, (f.shape[1] * h // f.shape[0], h))
                    )
                    f = np.ascontiguousarray(f)
                    cv2.putText(f, label, (6, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
                    sides.append(f)
                writer.append_data(np.concatenate(sides, axis=1))
                frames += 1
        finally:
            writer.close()
        os.replace(tmp, path)
    finally:
        for r in readers:
            r.close()
        tmp.unlink(missing_ok=True)
    return frames


def redrive_main(args: argparse.Namespace) -> int:
    from automot.world.cli import overridden_agent_config
    from automot.world.runner import AgentCrashed, run_route

    run = load_run(args.run_dir)
    record = run.record
    if record is None:
        raise RunFolderError(f"{args.run_dir}: no results.json record: nothing to re-drive")
    if not str(record.get("town_name", "")).startswith("embedded/"):
        raise UsageError(
            "redrive is embedded-world only: a CARLA run cannot be re-simulated from its files (the server's physics "
            "and traffic manager are not deterministic replays of the run)"
        )
    world_path = find_world_log(Path(run.folder), run.ticks_path)
    if world_path is None:
        raise RunFolderError(f"{args.run_dir}: no {WORLD_NAME}: drive again with recorder.world_jsonl on (the default)")
    overrides = list(args.overrides or [])
    if args.checkpoint:
        overrides.insert(0, clikit.checkpoint_override(args.checkpoint))
    if not overrides:
        raise UsageError("the agent that takes over: give --checkpoint DIR or --set KEY=VALUE")
    frames = sorted(int(t["frame"]) for t in run.ticks)
    if not frames or not 0 <= args.from_tick <= frames[-1]:
        raise UsageError(f"--from-tick {args.from_tick}: the run has ticks 0..{frames[-1] if frames else -1}")
    config = Path(run.folder) / "agent_config.yaml"
    if not config.is_file():
        raise RunFolderError(f"{config}: missing (the run's resolved agent config)")
    route, seed, cap = route_of(record, len(frames))
    inputs = [p for p in (args.run_dir, args.checkpoint) if p]
    out = clikit.prepare_out(args.out, args.overwrite, source=inputs)
    _, states = read_world(world_path)
    radius = (((run.summary or {}).get("config") or {}).get("recorder") or {}).get("world_radius_m", 60.0)
    plan = {
        "from_tick": args.from_tick,
        "radius": radius,
        "controls": {int(t["frame"]): [t["control"][k] for k in ("steer", "throttle", "brake")] for t in run.ticks},
        "states": {f: s for f, s in states.items() if f <= args.from_tick},
    }
    saved = {k: os.environ.get(k) for k in (PLAN_ENV, "AUTOMOT_RECORD_DIR", "AUTOMOT_RECORD_INPUTS")}
    with tempfile.TemporaryDirectory(prefix="automot-redrive-") as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
        merged = overridden_agent_config(str(config), overrides, Path(tmp))
        os.environ.update({PLAN_ENV: str(plan_path), "AUTOMOT_RECORD_DIR": str(Path(out).resolve())})
        os.environ.pop("AUTOMOT_RECORD_INPUTS", None)
        try:
            run_route(route, AGENT_FILE, merged, out, ticks=cap, seed=seed, progress=not args.no_progress)
        except AgentCrashed as exc:
            cause = exc.__cause__
            if isinstance(cause, WorldDiverged):
                raise CheckFailed(
                    f"the re-simulated world is not the recorded one ({cause}): the embedded world is not deterministic "
                    "here, so a re-drive would compare different situations"
                ) from None
            raise
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    report = {
        "run": str(Path(args.run_dir).resolve()),
        "from_tick": args.from_tick,
        "route": route,
        "seed": seed,
        "ticks_cap": cap,
        "overrides": overrides,
        "state_checked_ticks": args.from_tick + 1,
        **compare_runs(Path(args.run_dir), Path(out), args.from_tick),
    }
    if run.video_path is not None and (Path(out) / "video.mp4").is_file():
        report["side_by_side_frames"] = write_side_by_side(
            run.video_path, Path(out) / "video.mp4", Path(out) / SIDE_BY_SIDE
        )
        report["video"] = SIDE_BY_SIDE
    atomic_write_json(Path(out) / REDRIVE_JSON, report)
    o, r = report["original"], report["redrive"]
    print(
        f"redrive from tick {args.from_tick}: world state checked on {report['state_checked_ticks']} ticks; "
        f"diverges at tick {report['divergence_tick']}; DS {o['ds']} -> {r['ds']} ({o['status']} -> {r['status']})"
    )
    for item in report["infractions"]:
        print(f"  {'still happens' if item['still_happens'] else 'avoided'}: {item['message']}")
    print(f"  {Path(out) / REDRIVE_JSON}")
    return 0
