"""Reading a run folder: the one place that knows the file layout (inspect, replay and view all go through it).

A run folder is what ``automot drive --world embedded --out DIR`` (or one CARLA route of the agent's recorder)
leaves: ``results.json`` (leaderboard checkpoint format), ``ticks.jsonl`` (one line per tick, agent/recorder.py),
``summary.jsonl``, ``video.mp4``, ``agent_config.yaml`` and, with ``--record-inputs``, ``inputs/`` (the model's
recorded inputs, agent/input_recorder.py). An eval folder (``automot eval``) holds one such folder per route under
``DIR/routes/<route_id>/``, where the results JSON may have another name and the recorder files may sit one level
below (``<save_name>/``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automot.errors import UsageError

RESULTS_NAME = "results.json"
TICKS_NAME = "ticks.jsonl"
SUMMARY_NAME = "summary.jsonl"
VIDEO_NAME = "video.mp4"
INPUTS_DIR = "inputs"
ROUTES_DIR = "routes"

_AT = re.compile(r"x=\s*(-?[\d.]+(?:e-?\d+)?),\s*y=\s*(-?[\d.]+(?:e-?\d+)?)")


class RunFolderError(UsageError):
    """Not a run folder, or a file in it that cannot be read (exit 2)."""


@dataclass
class Infraction:
    kind: str  # leaderboard key (collisions_vehicle, route_dev, ...)
    message: str
    xy: tuple[float, float] | None  # where, when the message names a location
    tick: int | None = None  # the tick it happened (nearest recorded ego position to xy; the last tick for a timeout)
    sim_time: float | None = None
    located_by: str | None = None  # how the tick was found: "position" (distance in m follows), "end", None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "xy": list(self.xy) if self.xy else None,
            "tick": self.tick,
            "sim_time": self.sim_time,
            "located_by": self.located_by,
        }


@dataclass
class Run:
    """One route's files, read."""

    folder: Path
    name: str
    record: dict[str, Any] | None  # the route's leaderboard record (results.json _checkpoint.records[0])
    ticks: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    ticks_path: Path | None = None
    video_path: Path | None = None
    inputs_dir: Path | None = None
    bad_lines: int = 0  # unreadable ticks.jsonl lines (a cut stream's last line)
    problem: str | None = None  # an eval route folder that cannot be read (listed, not silently left out)

    @property
    def status(self) -> str:
        if self.problem:
            return f"unreadable: {self.problem}"
        return (self.record or {}).get("status", "no results")

    @property
    def scores(self) -> dict[str, float | None]:
        s = (self.record or {}).get("scores") or {}
        return {"ds": s.get("score_composed"), "rc": s.get("score_route"), "penalty": s.get("score_penalty")}

    def tick_index(self) -> dict[int, int]:
        """frame -> position in ``ticks``."""
        return {int(t["frame"]): i for i, t in enumerate(self.ticks) if t.get("frame") is not None}

    def infractions(self) -> list[Infraction]:
        """Every infraction of the record, each placed at a tick where the run's files allow it.

        Leaderboard messages carry a location, not a time: the tick is the one whose recorded ego position (the
        agent's estimate) is nearest; a route timeout is the last tick. Others (min speed) stay unplaced.
        """
        out: list[Infraction] = []
        for kind, items in ((self.record or {}).get("infractions") or {}).items():
            for message in items or []:
                m = _AT.search(str(message))
                xy = (float(m.group(1)), float(m.group(2))) if m else None
                inf = Infraction(kind, str(message), xy)
                self._place(inf)
                out.append(inf)
        return sorted(out, key=lambda i: (i.tick is None, i.tick if i.tick is not None else 0))

    def _place(self, inf: Infraction) -> None:
        if not self.ticks:
            return
        if inf.xy is not None:
            best, best_d = None, math.inf
            for t in self.ticks:
                ego = t.get("ego") or {}
                if ego.get("x") is None or ego.get("y") is None:
                    continue
                d = math.hypot(ego["x"] - inf.xy[0], ego["y"] - inf.xy[1])
                if d < best_d:
                    best, best_d = t, d
            if best is not None:
                inf.tick, inf.sim_time = int(best["frame"]), best.get("sim_time")
                inf.located_by = f"position ({best_d:.1f} m)"
        elif inf.kind in ("route_timeout", "scenario_timeouts") or "timeout" in inf.message.lower():
            last = self.ticks[-1]
            inf.tick, inf.sim_time, inf.located_by = int(last["frame"]), last.get("sim_time"), "end"


def read_ticks(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Tick records of a ticks.jsonl; unreadable lines are counted, not fatal (a killed run's last line)."""
    ticks, bad = [], 0
    with path.open(encoding="utf-8", errors="replace") as fh:  # a garbled line is counted, not fatal
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                ticks.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return ticks, bad


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON and bytes that are not UTF-8 (a binary file)
        raise RunFolderError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def _results_file(folder: Path) -> Path | None:
    if (folder / RESULTS_NAME).is_file():
        return folder / RESULTS_NAME
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and "_checkpoint" in data:
            return path
    return None


def _find(folder: Path, name: str, depth: int = 1) -> Path | None:
    if (folder / name).exists():
        return folder / name
    if depth > 0:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found = _find(sub, name, depth - 1)
            if found is not None:
                return found
    return None


def load_run(folder: str | Path, name: str | None = None) -> Run:
    """Read one route folder; RunFolderError when it holds neither a results JSON nor a ticks.jsonl."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"{folder}: not a folder")
    results = _results_file(folder)
    ticks_path = _find(folder, TICKS_NAME)
    if results is None and ticks_path is None:
        raise RunFolderError(f"{folder}: not a run folder (no results.json and no {TICKS_NAME})")
    record = None
    if results is not None:
        data = _read_json(results)
        if not isinstance(data, dict) or not isinstance(data.get("_checkpoint") or {}, dict):
            raise RunFolderError(f"{results}: not a leaderboard results file (no _checkpoint record)")
        records = (data.get("_checkpoint") or {}).get("records") or []
        record = records[-1] if records else None
    run = Run(folder=folder, name=name or folder.name, record=record, ticks_path=ticks_path)
    if ticks_path is not None:
        run.ticks, run.bad_lines = read_ticks(ticks_path)
        base = ticks_path.parent
        summary = base / SUMMARY_NAME
        if summary.is_file():
            try:
                run.summary = json.loads(summary.read_text(encoding="utf-8").strip() or "null")
            except ValueError:  # bad JSON or not UTF-8
                run.summary = None
        run.video_path = base / VIDEO_NAME if (base / VIDEO_NAME).is_file() else None
    inputs = _find(folder, INPUTS_DIR)
    run.inputs_dir = inputs if inputs is not None and inputs.is_dir() else None
    return run


def load_runs(folder: str | Path) -> list[Run]:
    """A run folder -> [its run]; an eval folder (``routes/<id>/``) -> every route, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"{folder}: not a folder")
    routes = folder / ROUTES_DIR
    if routes.is_dir() and not (folder / TICKS_NAME).is_file():
        runs = []
        for sub in sorted((p for p in routes.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural):
            try:
                runs.append(load_run(sub, name=sub.name))
            except RunFolderError as exc:
                if any(not p.name.startswith(".") for p in sub.iterdir()):  # files, but unreadable: say so
                    runs.append(Run(folder=sub, name=sub.name, record=None, problem=str(exc)))
                # else: a route folder with nothing in it yet
        if not runs:
            raise RunFolderError(f"{folder}: eval folder without any readable route under {ROUTES_DIR}/")
        return runs
    return [load_run(folder)]


def _natural(path: Path) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))
