"""Merge the per-route records of an evaluation folder into one leaderboard file and Bench2Drive's merge file.

Layout read (written by the `automot eval` workers)::

    DIR/routes/<route_id>/          one folder per route of the route file (its XML id)
        *.json                      the evaluator's checkpoint JSON(s): ``{"_checkpoint": {"records": [...]}}``
        metric_info.json            Bench2Drive's per-step ego state (here or in a sub-folder, e.g. <save_name>/)
        ticks.jsonl, video.mp4      the agent's recorder outputs (optional)

Written (atomically, `automot.fsio`):

* ``DIR/results.json`` -- leaderboard format: ``_checkpoint.records`` (every record found, in route-file order,
  ``index`` renumbered), ``global_record`` and ``values`` over the route file's count (missing routes count 0),
  ``progress`` [records, expected], ``entry_status`` ``Finished`` only when nothing is missing, plus ``missing``.
* ``DIR/merged.json`` -- Bench2Drive's ``merge_route_json.py`` format: records without ``index``, ``"driving
  score"`` = sum / 220 and ``"success rate"`` = successes / 220 literally as the tool writes them, ``"eval num"``;
  plus ``route_count``, ``missing`` and ``summary`` (our metrics over the route file's count, which equal the
  tool's numbers for the 220-route file). Records keep the route file's order (the tool sorts by route_id,
  descending; no metric depends on the order).

Exactly the route file's set: a route folder not in ``route_ids`` is ignored and named in ``summary.extra``; a route
(or repetition) without a finished record is listed in ``missing`` and scores 0 -- never silently dropped. A
record whose status is still ``Started`` (route in progress when the evaluator died) is not a finished record.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automot.errors import ConfigError
from automot.evaluation import metrics as M
from automot.evaluation import stats
from automot.fsio import atomic_write_json, is_temp_name

ROUTES_DIR = "routes"
RESULTS_NAME = "results.json"
MERGED_NAME = "merged.json"
METRIC_INFO_NAME = "metric_info.json"
TICKS_NAME = "ticks.jsonl"
VIDEO_NAME = "video.mp4"
RECORD_NAME = "record.json"  # the eval workers' per-route summary (attempts, failure reason); not leaderboard format
_NOT_RECORD_FILES = {METRIC_INFO_NAME, MERGED_NAME, RECORD_NAME}
_LOCATION = re.compile(r"x=(-?[\d.]+(?:e-?\d+)?),\s*y=(-?[\d.]+(?:e-?\d+)?)")
FIRST_INFRACTION_MAX_M = 30.0  # a located infraction is timed by the closest ego tick within this distance

__all__ = ["merge_eval", "route_ids_from_xml", "read_route_records", "route_row", "load_merged"]


def route_ids_from_xml(path: str | os.PathLike) -> list[str]:
    """The ``id`` attributes of a route XML's ``<route>`` elements, in file order (duplicates refused)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"route file not found: {path}")
    try:
        ids = [r.id for r in M.parse_routes_xml(path)]
    except Exception as exc:  # ParseError and friends
        raise ConfigError(f"cannot parse route file {path}: {exc}") from exc
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"route file {path} repeats route ids: {', '.join(dupes)}")
    return ids


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_route_records(route_dir: Path) -> tuple[list[dict], list[str], list[str]]:
    """(finished records, sensors, unreadable files) of one route folder; a later file wins for a route_id.
    JSON files without ``_checkpoint.records`` are not record files and are skipped; unparsable ones are named."""
    records: dict[str, dict] = {}
    sensors: list[str] = []
    bad: list[str] = []
    if not route_dir.is_dir():
        return [], [], []
    files = sorted(
        (p for p in route_dir.glob("*.json") if p.name not in _NOT_RECORD_FILES and not is_temp_name(p.name)),
        key=lambda p: (p.stat().st_mtime, p.name),
    )
    for path in files:
        data = _load_json(path)
        if data is None:
            bad.append(path.name)
            continue
        recs = (data.get("_checkpoint") or {}).get("records") if isinstance(data, dict) else None
        if not isinstance(recs, list):
            continue
        if data.get("sensors") and not sensors:
            sensors = list(data["sensors"])
        for rec in recs:
            if isinstance(rec, dict) and rec.get("route_id") and rec.get("status") not in (None, "Started"):
                records[str(rec["route_id"])] = rec
    ordered = sorted(records.values(), key=M.repetition_of)
    return ordered, sensors, bad


def _find(route_dir: Path, name: str, prefer: str | None = None) -> Path | None:
    if prefer and (route_dir / prefer / name).is_file():
        return route_dir / prefer / name
    if (route_dir / name).is_file():
        return route_dir / name
    found = sorted(p for p in route_dir.rglob(name) if p.is_file()) if route_dir.is_dir() else []
    return found[0] if found else None


def _read_ticks(path: Path | None) -> list[tuple[float, float, float]]:
    """(sim_time, x, y) per tick of a ticks.jsonl (bad lines skipped: a cut stream stays readable)."""
    out = []
    if path is None:
        return out
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                tick = json.loads(line)
                ego = tick.get("ego") or {}
                out.append((float(tick["sim_time"]), float(ego["x"]), float(ego["y"])))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    return out


def infraction_time(message: str, key: str, ticks: Sequence[tuple[float, float, float]]) -> float | None:
    """Simulated time of an infraction: the closest ego tick to the location in its message (within
    FIRST_INFRACTION_MAX_M; the earliest of equally close ticks), the end of the route for a route timeout."""
    if not ticks:
        return None
    if key == "route_timeout":
        return ticks[-1][0]
    match = _LOCATION.search(str(message))
    if not match:
        return None
    x, y = float(match.group(1)), float(match.group(2))
    best = min(ticks, key=lambda t: (math.hypot(t[1] - x, t[2] - y), t[0]))
    return best[0] if math.hypot(best[1] - x, best[2] - y) <= FIRST_INFRACTION_MAX_M else None


def first_infraction(record: Mapping[str, Any], ticks: Sequence) -> tuple[str | None, str | None, float | None]:
    """(key, message, time) of the earliest infraction (min-speed entries are not infractions here)."""
    found = []
    for order, key in enumerate(M.INFRACTION_KEYS):
        if key == "min_speed_infractions":
            continue
        for i, msg in enumerate(M.infractions_of(record).get(key, [])):
            t = infraction_time(msg, key, ticks)
            found.append((t is None, t if t is not None else 0.0, order, i, key, msg))
    if not found:
        return None, None, None
    unknown, t, _, _, key, msg = min(found)
    return key, msg, (None if unknown else t)


def route_row(out_dir: Path, folder: str, record: Mapping[str, Any] | None, rep_id: str) -> dict[str, Any]:
    """One row of the per-route table (and the paths the report links, relative to ``out_dir``)."""
    route_dir = out_dir / ROUTES_DIR / folder
    video = _find(route_dir, VIDEO_NAME)
    worker = _load_json(route_dir / RECORD_NAME) if (route_dir / RECORD_NAME).is_file() else None
    worker = worker if isinstance(worker, dict) else {}
    row: dict[str, Any] = {
        "folder": folder,
        "route_id": rep_id,
        "video": video.relative_to(out_dir).as_posix() if video else None,
        "attempts": worker.get("attempts"),
        "failure_reason": worker.get("failure_reason") or (record or {}).get("meta", {}).get("failure_reason"),
    }
    if record is None:
        row.update(status="Missing (no record)", missing=True, ds=0.0, rc=0.0, penalty=0.0, success=False)
        row.update(first_infraction=None, first_infraction_message=None, first_infraction_time=None)
        return row
    save_name = record.get("save_name")
    ticks = _read_ticks(_find(route_dir, TICKS_NAME, prefer=save_name))
    key, msg, t = first_infraction(record, ticks)
    row.update(
        status=str(record.get("status")),
        missing=False,
        ds=M.score(record),
        rc=M.score(record, "score_route"),
        penalty=M.score(record, "score_penalty"),
        success=M.is_success(record),
        scenario=record.get("scenario_name"),
        town=record.get("town_name"),
        num_infractions=sum(len(v) for k, v in M.infractions_of(record).items() if k != "min_speed_infractions"),
        first_infraction=key,
        first_infraction_message=msg,
        first_infraction_time=t,
        efficiency=M.route_efficiency(record),
    )
    return row


def _rep_ids(folder: str, repetitions: int) -> list[str]:
    return [f"RouteScenario_{folder}_rep{k}" for k in range(repetitions)]


_SEED_FOLDER = re.compile(r"^(?P<route>.+)_seed(?P<seed>\d+)$")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def seed_groups(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Mean +- std over seeds for folders named ``<route>_seed<k>`` (the embedded world's (route, seed) jobs):
    per route (DS, RC, success share over its seeds) and for the whole set (DS per seed over its routes, then
    mean +- sample std over seeds). ``None`` when no folder carries a seed."""
    per_route: dict[str, list[Mapping[str, Any]]] = {}
    per_seed: dict[int, list[float]] = {}
    for row in rows:
        match = _SEED_FOLDER.match(str(row.get("folder")))
        if not match:
            continue
        per_route.setdefault(match.group("route"), []).append(row)
        per_seed.setdefault(int(match.group("seed")), []).append(float(row.get("ds") or 0.0))
    if not per_route:
        return None
    routes = {}
    for name, items in per_route.items():
        ds_mean, ds_std = _mean_std([float(r.get("ds") or 0.0) for r in items])
        rc_mean, rc_std = _mean_std([float(r.get("rc") or 0.0) for r in items])
        routes[name] = {
            "seeds": len(items),
            "ds_mean": ds_mean,
            "ds_std": ds_std,
            "rc_mean": rc_mean,
            "rc_std": rc_std,
            "success": sum(bool(r.get("success")) for r in items) / len(items),
        }
    seed_ds = {seed: sum(v) / len(v) for seed, v in sorted(per_seed.items())}
    mean, std = _mean_std(list(seed_ds.values()))
    return {"routes": routes, "ds_per_seed": {str(k): v for k, v in seed_ds.items()}, "ds_mean": mean, "ds_std": std}


def merge_eval(
    out_dir: str | os.PathLike,
    route_ids: Sequence[str],
    *,
    routes_xml: str | os.PathLike | None = None,
    repetitions: int = 1,
    carla_root: str | os.PathLike | None = None,
    dest: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Merge ``out_dir/routes/<id>/`` for exactly ``route_ids`` (in that order) into ``results.json`` and
    ``merged.json`` (in ``dest``, default ``out_dir``: one seed's official files go to their own folder); return the
    summary (also stored as ``merged.json["summary"]``; its paths stay relative to ``out_dir``).

    ``routes_xml`` (the route file) enables the multi-ability scores (scenario type per route id);
    ``carla_root`` (default ``$CARLA_ROOT``) its Traffic_Signs partial credit. ``repetitions``: records expected
    per route (``RouteScenario_<id>_rep<k>``, k < repetitions).
    """
    out = Path(out_dir)
    route_ids = [str(r) for r in route_ids]
    if len(set(route_ids)) != len(route_ids):
        raise ConfigError("merge_eval: route_ids repeat an id")
    if repetitions < 1:
        raise ConfigError("merge_eval: repetitions must be >= 1")
    routes_root = out / ROUTES_DIR
    n_expected = len(route_ids) * repetitions

    records: list[dict] = []
    rows: list[dict] = []
    missing: list[str] = []
    unreadable: list[str] = []
    sensors: list[str] = []
    metric_paths: list[Path | None] = []
    for folder in route_ids:
        found, found_sensors, bad = read_route_records(routes_root / folder)
        sensors = sensors or found_sensors
        unreadable += [f"{ROUTES_DIR}/{folder}/{name}" for name in bad]
        by_rep: dict[int, dict] = {}
        for rec in found:
            rep = M.repetition_of(rec)
            if rep < repetitions:
                by_rep.setdefault(rep, rec)
        for k, rep_id in enumerate(_rep_ids(folder, repetitions)):
            rec = by_rep.get(k)
            if rec is None:
                missing.append(rep_id if repetitions > 1 else folder)
            else:
                records.append(rec)
                metric_paths.append(_find(routes_root / folder, METRIC_INFO_NAME, prefer=rec.get("save_name")))
            rows.append(route_row(out, folder, rec, rec.get("route_id") if rec else rep_id))
    extra = (
        sorted(p.name for p in routes_root.iterdir() if p.is_dir() and p.name not in set(route_ids))
        if routes_root.is_dir()
        else []
    )

    # results.json: the leaderboard format over the expected count.
    lb_records = []
    for i, rec in enumerate(records):
        lb_records.append({**rec, "index": i})
    glob = M.global_record(lb_records, n_expected)
    values, labels = M.leaderboard_values(glob)
    entry_status = "Finished" if not missing else "Started"
    if any("Simulation crashed" in str(r.get("status")) for r in records):
        entry_status = "Crashed"
    results = {
        "_checkpoint": {"global_record": glob, "progress": [len(records), n_expected], "records": lb_records},
        "entry_status": entry_status,
        "eligible": entry_status == "Finished",
        "sensors": sensors,
        "values": values,
        "labels": labels,
        "missing": missing,
    }

    routes = M.parse_routes_xml(routes_xml) if routes_xml else None
    summary = summarize(records, n_expected, routes=routes, metric_paths=metric_paths, carla_root=carla_root)
    summary.update(missing=missing, extra=extra, unreadable=unreadable, routes=rows, seeds=seed_groups(rows))
    by_route = {r.id: M.abilities_of(r.scenario_type) for r in routes} if routes is not None else None
    summary["uncertainty"] = stats.summary_uncertainty(rows, by_route)  # mean, std over seeds, bootstrap CI
    if extra:
        summary["notes"].append(f"route folders not in the route file were ignored: {', '.join(extra)}")
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        summary["notes"].insert(0, f"{len(missing)} of {n_expected} routes have no record and score 0: {shown}")

    merged_records = []
    for rec in records:
        merged_records.append({k: v for k, v in rec.items() if k != "index"})
    merged = {
        "_checkpoint": {"records": merged_records},
        "driving score": M.driving_score(records, M.B2D_ROUTE_COUNT),
        "success rate": M.success_rate(records, M.B2D_ROUTE_COUNT),
        "eval num": len(records),
        "route_count": n_expected,
        "missing": missing,
        "route_ids": route_ids,
        "repetitions": repetitions,
        "routes_xml": str(Path(routes_xml).resolve()) if routes_xml else None,
        "summary": summary,
    }
    target = Path(dest) if dest is not None else out
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target / RESULTS_NAME, results, indent=2)
    atomic_write_json(target / MERGED_NAME, merged, indent=2)
    return summary


def summarize(
    records: Sequence[Mapping[str, Any]],
    n_routes: int,
    *,
    routes: Sequence[M.RouteSpec] | None = None,
    metric_paths: Sequence[Path | None] = (),
    carla_root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Every metric of the summary table over ``n_routes`` expected routes (see `automot.evaluation.metrics`)."""
    notes: list[str] = []
    per_route_smooth = []
    for path in metric_paths:
        info = _load_json(path) if path else None
        per_route_smooth.append(M.route_smoothness(info) if isinstance(info, dict) else None)
    with_info = sum(v is not None for v in per_route_smooth)
    if with_info < len(records):
        notes.append(f"smoothness over {with_info} of {len(records)} records (the others have no metric_info.json)")
    efficiency = M.driving_efficiency(records)
    if efficiency is None:
        notes.append("driving efficiency unavailable: no record has min_speed_infractions entries")
    abilities = None
    if routes is not None:
        abilities = M.ability_scores(records, routes, M.carla_junction_index(carla_root))
        notes += abilities["notes"]
    else:
        notes.append("multi-ability scores need the route XML (scenario types): not computed")
    if n_routes != M.B2D_ROUTE_COUNT:
        notes.append(
            f"DS / SR / RC divide by this route file's {n_routes} routes; Bench2Drive's merge divides by "
            f"{M.B2D_ROUTE_COUNT} (merged.json 'driving score' / 'success rate' keep that literal rule)"
        )
    return {
        "route_count": n_routes,
        "records": len(records),
        "driving_score": M.driving_score(records, n_routes),
        "success_rate": M.success_rate(records, n_routes),
        "successes": sum(M.is_success(r) for r in records),
        "route_completion": M.mean_over_routes(records, "score_route", n_routes),
        "infraction_penalty": M.mean_over_routes(records, "score_penalty", n_routes),
        "failed": sum("Failed" in str(r.get("status")) for r in records),
        "km_driven": M.km_driven(records),
        "infractions_per_km": M.infractions_per_km(records),
        "infraction_counts": M.infraction_counts(records),
        "driving_efficiency": efficiency,
        "smoothness": M.smoothness(per_route_smooth),
        "abilities": abilities,
        "notes": notes,
    }


def load_merged(out_dir: str | os.PathLike) -> dict[str, Any]:
    """``DIR/merged.json`` as written by :func:`merge_eval` (ConfigError when absent or not ours)."""
    path = Path(out_dir) / MERGED_NAME
    data = _load_json(path) if path.is_file() else None
    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
        raise ConfigError(f"{path}: no merge summary (run `automot eval` or merge_eval first)")
    return data
