"""Per-route records under ``DIR/routes/<route_id>/`` that appear complete or not at all, and route files.

A route is run in a hidden staging folder ``DIR/routes/.staged.<route_id>.XXXX.tmp/`` (the evaluator's checkpoint
``results.json``, its log, the agent's video / ``ticks.jsonl``, Bench2Drive's ``metric_info.json``); when it ends,
``record.json`` (our summary: status, score, attempts, failure reason) is written into it atomically and the whole
folder is renamed to ``DIR/routes/<route_id>/`` in one ``rename``. So a route folder exists only complete
(:func:`is_complete`), a killed run leaves at most staging folders (removed by :func:`remove_stale_stages` when the
eval is resumed), and a route is committed at most once (a second commit of the same route is discarded).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automot.errors import UsageError
from automot.fsio import _fsync_dir, atomic_write_json
from automot.world.leaderboard_record import INFRACTION_KEYS  # the leaderboard record's keys, defined once

RECORD = "record.json"  # our per-route summary, written last: its presence means the route folder is complete
RESULTS = "results.json"  # the evaluator checkpoint (leaderboard format) of this route
ROUTES_DIR = "routes"
STAGE_PREFIX = ".staged."


@dataclass(frozen=True)
class Job:
    """One unit of work: a route of the route file (``seed`` None) or an embedded (route, seed) pair."""

    job_id: str  # the folder name under DIR/routes/ and the id the merge is keyed by
    route_id: str  # the XML route id, or the embedded route name
    length: float  # metres (XML waypoints) or ticks (embedded): the scheduling key, longest first
    seed: int | None = None


def longest_first(jobs: list[Job]) -> list[Job]:
    """The order jobs are handed to free workers: longest first (the long routes start early, so the run does not end
    waiting on one), ties by job id so the order is reproducible."""
    return sorted(jobs, key=lambda j: (-j.length, j.job_id))


def route_dir(out: str | os.PathLike, job_id: str) -> Path:
    return Path(out) / ROUTES_DIR / job_id


def is_complete(out: str | os.PathLike, job_id: str) -> bool:
    """The route folder exists and its record.json and results.json can be read (see :func:`unreadable`)."""
    folder = route_dir(out, job_id)
    return (folder / RECORD).is_file() and unreadable(folder) is None


def unreadable(folder: Path) -> str | None:
    """Why a committed route folder cannot be counted (a file cut or overwritten after the commit), or None."""
    import json

    for name, key in ((RECORD, None), (RESULTS, "_checkpoint")):
        path = folder / name
        if name == RESULTS and not path.exists():
            continue  # some evaluators name their results file otherwise: record.json is the commit mark
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON, or bytes that are not UTF-8
            return f"{path}: cannot be read ({type(exc).__name__})"
        if not isinstance(data, dict) or (key is not None and not isinstance(data.get(key), dict)):
            return f"{path}: not a {'record' if key is None else 'leaderboard results file'}"
    return None


def set_aside_unreadable(out: str | os.PathLike, job_ids: list[str]) -> list[tuple[str, str]]:
    """Move each route folder of ``job_ids`` that has a record.json but cannot be read to a hidden
    ``DIR/routes/.unreadable.<job_id>.N/`` (kept for a look, never counted), so the route runs again; returns
    (job_id, why) for each."""
    moved = []
    for job_id in job_ids:
        folder = route_dir(out, job_id)
        why = unreadable(folder) if (folder / RECORD).is_file() else None
        if why is None:
            continue
        n = 0
        while (aside := folder.parent / f".unreadable.{job_id}.{n}").exists():
            n += 1
        os.rename(folder, aside)
        moved.append((job_id, why))
    return moved


def read_record(out: str | os.PathLike, job_id: str) -> dict[str, Any] | None:
    import json

    path = route_dir(out, job_id) / RECORD
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def new_stage(out: str | os.PathLike, job_id: str) -> Path:
    folder = Path(out) / ROUTES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{job_id}.", suffix=".tmp", dir=folder))


def commit_stage(stage: Path, out: str | os.PathLike, job_id: str, record: dict[str, Any]) -> bool:
    """Write ``record.json`` into ``stage`` and rename it to ``DIR/routes/<job_id>``; False (stage removed) when
    that route already has a folder (it was committed by another attempt: never scored twice)."""
    atomic_write_json(stage / RECORD, record)
    _fsync_dir(stage)
    final = route_dir(out, job_id)
    try:
        os.rename(stage, final)  # atomic; fails when `final` exists and is not empty
    except OSError:
        if final.exists():
            shutil.rmtree(stage, ignore_errors=True)
            return False
        raise
    _fsync_dir(final.parent)
    return True


def remove_stale_stages(out: str | os.PathLike) -> list[Path]:
    """Remove the staging folders a killed run left (call while holding DIR's lock)."""
    folder = Path(out) / ROUTES_DIR
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(STAGE_PREFIX) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def failure_results(job: Job, reason: str, route_length: float = 0.0) -> dict[str, Any]:
    """A leaderboard-format checkpoint holding one route scored 0 (Bench2Drive's rule: a crashed route counts 0)
    with the failure reason in the record's ``meta.failure_reason``."""
    rid = f"RouteScenario_{job.route_id}_rep0"
    record = {
        "index": 0,
        "route_id": rid,
        "scenario_name": str(job.route_id),
        "weather_id": "0",
        "save_name": "",
        "town_name": "",
        "status": "Failed - Simulation crashed",
        "num_infractions": 0,
        "infractions": {k: [] for k in INFRACTION_KEYS},
        "scores": {"score_route": 0.0, "score_penalty": 1.0, "score_composed": 0.0},
        "meta": {
            "route_length": round(route_length, 3),
            "duration_game": 0.0,
            "duration_system": 0.0,
            "failure_reason": reason,
        },
    }
    return {
        "_checkpoint": {
            "global_record": {},
            "progress": [1, 1],
            "records": [record],
        },
        "entry_status": "Crashed",
        "eligible": False,
        "sensors": [],
        "values": [],
        "labels": [],
    }


def route_records(results: dict[str, Any]) -> list[dict[str, Any]]:
    return list(((results or {}).get("_checkpoint") or {}).get("records") or [])


def score_of(results: dict[str, Any]) -> float:
    """Mean driving score of the route records in a checkpoint (0 without records)."""
    records = route_records(results)
    if not records:
        return 0.0
    return sum(float(r.get("scores", {}).get("score_composed", 0.0)) for r in records) / len(records)


# -- route files -------------------------------------------------------------------------------------------------


def read_route_file(path: str | os.PathLike) -> list[tuple[str, float]]:
    """(route id, length in metres along its waypoints) for every route of a leaderboard XML, in file order."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise UsageError(f"--routes {path}: not a readable route file ({exc})") from None
    routes = []
    for route in root.iter("route"):
        rid = route.get("id")
        if rid is None:
            raise UsageError(f"--routes {path}: a <route> without an id")
        pts = [(float(p.get("x", 0)), float(p.get("y", 0))) for p in route.iter("position")]
        length = sum(math.dist(a, b) for a, b in zip(pts, pts[1:], strict=False))
        routes.append((rid, length))
    if not routes:
        raise UsageError(f"--routes {path}: no <route> in it")
    ids = [r for r, _ in routes]
    if len(set(ids)) != len(ids):
        raise UsageError(f"--routes {path}: duplicate route ids")
    return routes


def select_subset(ids: list[str], subset: str | None) -> list[str]:
    """``--routes-subset`` ("1711,1773", "1711-1790", or both mixed): the selected ids in file order."""
    if not subset:
        return list(ids)
    wanted: set[str] = set()
    ranges: list[tuple[int, int]] = []
    for part in (p.strip() for p in subset.split(",")):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            ranges.append((int(m.group(1)), int(m.group(2))))
        else:
            wanted.add(part)
    chosen = [i for i in ids if i in wanted or (i.isdigit() and any(a <= int(i) <= b for a, b in ranges))]
    unknown = sorted(wanted - set(ids))
    if unknown:
        raise UsageError(f"--routes-subset: route id(s) not in the route file: {', '.join(unknown)}")
    if not chosen:
        raise UsageError(f"--routes-subset {subset}: selects no route")
    return chosen
