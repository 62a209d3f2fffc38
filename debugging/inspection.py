"""``automot inspect RUN_DIR``: what happened and when, from the run's files only (no model, no simulator).

Per route: status, DS / RC / penalty, each infraction with the tick and sim time it happened at and the ticks just
before it (speed, control, decision, snapshot age, safe stop, control mode), then latency and staleness statistics
and counts of safe stops, control modes and input flags. ``--json`` prints the same as one JSON document.

Not named ``inspect.py``: ``automot redrive`` loads its agent file from this folder the way the leaderboard does
(the folder goes first on ``sys.path``), and a module named ``inspect`` there would then shadow the standard
library's in every process spawned afterwards (torch's multiprocessing children failed to start).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

import numpy as np

from automot.debugging.collision_story import collision_stories
from automot.debugging.runfiles import Run, load_runs

MIN_SPEED = "min_speed_infractions"  # readings of the surrounding-traffic speed ratio, not penalised (no infraction)
_PCT = re.compile(r"([\d.]+)%")


def _stats(values: list[float]) -> dict[str, float | int | None]:
    vals = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if vals.size == 0:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "max": None}
    return {
        "count": int(vals.size),
        "mean": round(float(vals.mean()), 4),
        "p50": round(float(np.percentile(vals, 50)), 4),
        "p95": round(float(np.percentile(vals, 95)), 4),
        "max": round(float(vals.max()), 4),
    }


def tick_brief(t: dict[str, Any]) -> dict[str, Any]:
    """The few fields of a tick a person reads first."""
    control = t.get("control") or {}
    snap = t.get("snapshot") or {}
    return {
        "tick": t.get("frame"),
        "sim_time": t.get("sim_time"),
        "speed": t.get("speed"),
        "steer": control.get("steer"),
        "throttle": control.get("throttle"),
        "brake": control.get("brake"),
        "mode": control.get("mode"),
        "decision": t.get("decision"),
        "age_ticks": snap.get("age_ticks"),
        "age_s": snap.get("age_s"),
        "safe_stop": t.get("safe_stop_reason") if t.get("safe_stop") else None,
        "error": t.get("error"),
    }


def summarize_run(run: Run, before: int = 5) -> dict[str, Any]:
    """The JSON summary of one route."""
    index = run.tick_index()
    infractions = []
    stories = collision_stories(run)  # what the car hit, from world.jsonl (when the run has one)
    readings = []
    for inf in run.infractions():
        if inf.kind == MIN_SPEED:
            m = _PCT.search(inf.message)
            readings.append(float(m.group(1)) if m else None)
            continue
        item = inf.to_json()
        story = stories.get(inf.message)
        if story is not None:  # the world log places a collision exactly (ground-truth ego position)
            inf.tick, inf.sim_time = story["tick"], story["sim_time"]
            item.update(tick=story["tick"], sim_time=story["sim_time"], located_by=story["located_by"])
            item["other_actor"] = story["other_actor"]
        if inf.tick is not None and inf.tick in index:
            i = index[inf.tick]
            item["ticks_before"] = [tick_brief(t) for t in run.ticks[max(0, i - before) : i + 1]]
        infractions.append(item)
    driving = [t for t in run.ticks if not t.get("warmup")]
    modes = Counter((t.get("control") or {}).get("mode") or "?" for t in run.ticks)
    stops = Counter(
        (t.get("safe_stop_kind") or t.get("safe_stop_reason") or "?") for t in run.ticks if t.get("safe_stop")
    )
    flags = Counter(f.split(":")[0] for t in run.ticks for f in t.get("input_flags") or [])
    runtime_stats = (run.summary or {}).get("runtime_stats") or {}
    refresh = runtime_stats.get("refresh_ms") or {}
    last = run.ticks[-1] if run.ticks else {}
    return {
        "route": run.name,
        "folder": str(run.folder),
        "status": run.status,
        "problem": run.problem,
        **run.scores,
        "ticks": len(run.ticks),
        "driving_ticks": len(driving),
        "sim_time": last.get("sim_time"),
        "unreadable_tick_lines": run.bad_lines,
        "infractions": infractions,
        "min_speed": _min_speed(readings),
        "latency_ms": {
            "fast_step": _stats([t.get("fast_step_ms") for t in driving]),
            "refresh": {k: refresh.get(k) for k in ("count", "mean", "p50", "p95", "max")} if refresh else None,
        },
        "staleness": {
            "age_ticks": _stats([(t.get("snapshot") or {}).get("age_ticks") for t in driving]),
            "age_s": _stats([(t.get("snapshot") or {}).get("age_s") for t in driving]),
        },
        "safe_stops": dict(stops),
        "control_modes": dict(modes),
        "input_flags": dict(flags),
        "refresh_overruns": sum(1 for t in run.ticks if t.get("refresh_overrun")),
        "errors": sum(1 for t in run.ticks if t.get("error")),
        "has_inputs": run.inputs_dir is not None,
        "video": str(run.video_path) if run.video_path else None,
    }


def _min_speed(readings: list[float | None]) -> dict[str, Any] | None:
    """The route's min-speed readings in one summary (ego speed as % of the surrounding traffic's, per stretch)."""
    if not readings:
        return None
    vals = [r for r in readings if r is not None]
    return {
        "readings": len(readings),
        "mean_pct": round(sum(vals) / len(vals), 2) if vals else None,
        "min_pct": min(vals) if vals else None,
        "below_100": sum(1 for r in vals if r < 100.0),
    }


def _f(value: Any, fmt: str = ".2f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, fmt)
    return str(value)


def format_run(s: dict[str, Any]) -> str:
    """A few lines per route, more for each infraction."""
    lines = [
        f"{s['route']}: {s['status']}  DS {_f(s['ds'])}  RC {_f(s['rc'])}  penalty {_f(s['penalty'], '.3f')}  "
        f"({s['ticks']} ticks, {s['driving_ticks']} driving, {_f(s['sim_time'], '.2f')} s sim)"
    ]
    for inf in s["infractions"]:
        where = f"tick {inf['tick']} t={_f(inf['sim_time'])}s" if inf["tick"] is not None else "tick unknown"
        how = f" [by {inf['located_by']}]" if inf["located_by"] else ""
        lines.append(f"  ! {inf['kind']} at {where}{how}: {inf['message']}")
        if inf.get("other_actor"):
            lines += _actor_lines(inf["other_actor"])
        for b in inf.get("ticks_before") or []:
            stop = f" SAFE STOP ({b['safe_stop']})" if b["safe_stop"] else ""
            err = f" ERROR {b['error']}" if b["error"] else ""
            lines.append(
                f"      tick {b['tick']:>5} v={_f(b['speed'])} steer={_f(b['steer'], '+.3f')} "
                f"thr={_f(b['throttle'])} brk={_f(b['brake'])} mode={b['mode']} age={_f(b['age_ticks'])}t "
                f"decision={b['decision']!r}{stop}{err}"
            )
    ms = s.get("min_speed")
    if ms:
        lines.append(
            f"  min speed (not infractions): {ms['readings']} readings, mean {_f(ms['mean_pct'])} % of the "
            f"surrounding traffic's speed, {ms['below_100']} below 100 %, lowest {_f(ms['min_pct'])} %"
        )
    fast, age = s["latency_ms"]["fast_step"], s["staleness"]["age_ticks"]
    refresh = s["latency_ms"]["refresh"] or {}
    lines.append(
        f"  latency: fast step mean {_f(fast['mean'])} / p95 {_f(fast['p95'])} / max {_f(fast['max'])} ms; "
        f"refresh mean {_f(refresh.get('mean'))} / p95 {_f(refresh.get('p95'))} ms; "
        f"snapshot age mean {_f(age['mean'])} / max {_f(age['max'])} ticks"
    )
    extras = [f"modes {s['control_modes']}"]
    if s["safe_stops"]:
        extras.append(f"safe stops {s['safe_stops']}")
    if s["input_flags"]:
        extras.append(f"input flags {s['input_flags']}")
    if s["refresh_overruns"]:
        extras.append(f"refresh overruns {s['refresh_overruns']}")
    if s["errors"]:
        extras.append(f"errors {s['errors']}")
    extras.append("inputs recorded" if s["has_inputs"] else "no recorded inputs")
    lines.append("  " + "; ".join(extras))
    return "\n".join(lines)


def _actor_lines(a: dict[str, Any]) -> list[str]:
    """The other actor of a collision: who, where from, when visible, and when braking was last enough."""
    out = [f"      other actor: {a['type']} id {a['id']} ({_f(a['length'])} x {_f(a['width'])} m), closing speed "
           f"{_f(a['closing_speed'])} m/s on the tick before contact"]  # fmt: skip
    for key, b in a["before"].items():
        where = "outside the recorded radius" if b is None else (
            f"tick {b['tick']} at ({_f(b['x'])}, {_f(b['y'])}) m, {_f(b['distance'])} m from the ego "
            f"(ahead {_f(b['rel'][0])} m, right {_f(b['rel'][1])} m), {_f(b['speed'])} m/s"
        )  # fmt: skip
        out.append(f"        {key} before: {where}")
    near, seen, brake = a.get("first_within_30m"), a.get("first_seen"), a.get("last_brake")
    out.append(
        "        first within 30 m: " + ("never" if near is None else f"tick {near['tick']} t={_f(near['sim_time'])} s")
        + "; first within 30 m and in the camera's view: "
        + ("never" if seen is None else f"tick {seen['tick']} t={_f(seen['sim_time'])} s ({_f(seen['distance'])} m)")
    )  # fmt: skip
    if brake is not None:
        out.append(
            f"        last tick a full brake still stopped short: {brake['tick']} t={_f(brake['sim_time'])} s at "
            f"{_f(brake['speed'])} m/s, gap {_f(brake['gap'])} m, time-to-collision {_f(brake['ttc'])} s"
        )
    else:
        out.append("        a full brake could not stop short on any recorded tick")
    return out


def inspect_folder(folder: str, before: int = 5) -> list[dict[str, Any]]:
    return [summarize_run(run, before) for run in load_runs(folder)]


def inspect_main(folder: str, as_json: bool = False, before: int = 5) -> int:
    summaries = inspect_folder(folder, before)
    if as_json:
        print(json.dumps({"routes": summaries}, indent=2, default=str))
    else:
        print("\n".join(format_run(s) for s in summaries))
    return 0
