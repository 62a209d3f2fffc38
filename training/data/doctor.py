"""``automot data doctor DIR``: validate a driving dataset folder before a long training job.

Works on the three layouts the trainer reads (``automot`` / ``bench2drive`` / ``pdm_lite``; detected from the
folder unless given). Every finding names the file (``samples.jsonl:LINE`` for the automot format) and the field
(``None`` when the whole file is the problem). Errors are what would break or silently corrupt training; warnings
are what the readers repair or what only looks unusual.

Full checks (the default of the command):
- structure: route / episode folders found, ``meta.json`` readable, each frame's annotation readable gzip JSON;
- missing files: the camera image of every annotated frame (automot: every frame a sample refers to);
- None / NaN fields: positions and target points are errors; ``theta`` / ``speed`` gaps are warnings (the
  Bench2Drive / PDM-Lite readers fill them from the neighbouring frames); a route with no valid value is an error;
- order: frame numbers strictly increasing (automot: samples in frame order); a ``timestamp`` field, where
  present, strictly increasing; gaps in the frame numbering are warnings;
- plausibility of the targets the readers derive (per sample): target points within ``MAX_TP_LATERAL_M`` to the
  side and ``MAX_TP_DISTANCE_M`` away, speeds within [0, ``MAX_SPEED_MPS``], waypoints no faster than
  ``MAX_SPEED_MPS``, path / waypoints finite;
- distributions: meta-action counts per decision slot and speed percentiles (in the report, not checks);
- PDM-Lite BEV-encoder inputs where a route has them (``route_features.pt`` shapes and frame ids, LiDAR BEV
  arrays' shape and dtype, frames per BEV path with those served by neither counted): data/bev_doctor.py.

Fast checks (``fast=True``; what ``automot train`` runs at start-up): structure, image presence (a directory
listing, no decoding), the first and last annotation of every route readable, frame-number order. They read a
few files per route, so they cost seconds on a full dataset.

A folder that is not a dataset of the format at all (no ``meta.json``, no episode / route folders, no such camera)
is a DatasetError (exit 2), not a finding. ``DoctorReport.ok``: ``error_count <= max_errors``. The command writes the report (JSON) atomically and exits
with ``ExitCode.CHECK_FAILED`` (4) when it is not ok.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automot.training.data.bev_doctor import check_route_bev, finish_bev, has_bev_inputs
from automot.training.data.schema import DECISIONS, DatasetError, SampleRecord

MAX_TP_LATERAL_M = 60.0  # a target point further to the side than this is a frame/heading error
MAX_TP_DISTANCE_M = 250.0
MAX_SPEED_MPS = 40.0  # 144 km/h
MAX_LISTED = 500  # findings kept in the report per kind (the counts are always complete)
FORMATS = ("automot", "bench2drive", "pdm_lite")


@dataclass
class DoctorReport:
    dataset: str
    format: str
    fast: bool
    max_errors: int = 0
    routes: int = 0
    frames: int = 0
    samples: int = 0
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    error_count: int = 0
    warning_count: int = 0
    decisions: dict = field(default_factory=dict)
    speed: dict = field(default_factory=dict)
    bev: dict = field(default_factory=dict)  # PDM-Lite BEV-encoder inputs (data/bev_doctor.py): frames per path
    _speeds: list[float] = field(default_factory=list, repr=False)
    _decisions: list[Counter] = field(default_factory=lambda: [Counter(), Counter(), Counter()], repr=False)

    def error(self, file: Path | str, fld: str | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append({"file": str(file), "field": fld, "message": message})

    def warning(self, file: Path | str, fld: str | None, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append({"file": str(file), "field": fld, "message": message})

    @property
    def ok(self) -> bool:
        return self.error_count <= self.max_errors

    def add_record(self, rec: SampleRecord) -> None:
        self.samples += 1
        if math.isfinite(rec.speed):
            self._speeds.append(float(rec.speed))
        for slot, d in enumerate(rec.decisions[:3]):
            self._decisions[slot][d] += 1

    def finish(self) -> DoctorReport:
        names = ("now", "+1s", "+2s")
        self.decisions = {
            names[i]: {d: c[d] for d in DECISIONS if c[d]} for i, c in enumerate(self._decisions) if sum(c.values())
        }
        if self._speeds:
            s = np.asarray(self._speeds)
            self.speed = {
                "min": float(s.min()),
                "p5": float(np.percentile(s, 5)),
                "p50": float(np.percentile(s, 50)),
                "mean": float(s.mean()),
                "p95": float(np.percentile(s, 95)),
                "max": float(s.max()),
                "stopped_fraction": float((s < 0.5).mean()),
            }
        return self

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "format": self.format,
            "fast": self.fast,
            "ok": self.ok,
            "max_errors": self.max_errors,
            "routes": self.routes,
            "frames": self.frames,
            "samples": self.samples,
            "error_count": self.error_count,
            "warning_count": self.warning_count,
            "errors": self.errors,
            "warnings": self.warnings,
            "decisions": self.decisions,
            "speed": self.speed,
            "bev": self.bev,
        }

    def summary(self) -> str:
        lines = [
            f"{self.dataset} ({self.format}{', fast checks' if self.fast else ''}): {self.routes} routes, "
            f"{self.frames} frames, {self.samples} samples; {self.error_count} errors, {self.warning_count} warnings",
        ]
        for kind, items, count in (("error", self.errors, self.error_count), ("warning", self.warnings, None)):
            for f in items[:10]:
                where = f["file"] + (f" [{f['field']}]" if f["field"] else "")
                lines.append(f"  {kind}: {where}: {f['message']}")
            shown = min(10, len(items))
            total = count if count is not None else self.warning_count
            if total > shown:
                lines.append(f"  ... {total - shown} more {kind}s (see the JSON report)")
        if self.decisions.get("now"):
            lines.append("  decisions (now): " + ", ".join(f"{k} {v}" for k, v in self.decisions["now"].items()))
        if self.speed:
            s = self.speed
            lines.append(
                f"  speed m/s: min {s['min']:.1f}, median {s['p50']:.1f}, p95 {s['p95']:.1f}, max {s['max']:.1f}; "
                f"stopped {100 * s['stopped_fraction']:.0f}%"
            )
        if self.bev.get("frames"):
            b = self.bev["frames"]
            lines.append(
                f"  BEV inputs (frames): {b['precomputed']} precomputed, {b['online']} online fallback, "
                f"{b['skipped']} skipped (neither)"
            )
        lines.append("OK" if self.ok else f"FAILED: {self.error_count} errors > max {self.max_errors}")
        return "\n".join(lines)


def detect_format(root: Path) -> str:
    """automot (meta.json), bench2drive (folders with anno/) or pdm_lite (folders with measurements/)."""
    from automot.training.data.bench2drive import find_routes

    if (root / "meta.json").is_file():
        return "automot"
    if find_routes(root, "anno"):
        return "bench2drive"
    if find_routes(root, "measurements", max_depth=4):
        return "pdm_lite"
    raise DatasetError(
        f"{root}: not a dataset folder (no meta.json, no Bench2Drive anno/ or PDM-Lite measurements/ folders)"
    )


def _bad_number(value) -> bool:
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def _bad_points(value, n: int = 2) -> bool:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return True
    return arr.ndim < 1 or arr.size < n or not np.isfinite(arr).all()


def check_record(report: DoctorReport, rec: SampleRecord, file: Path | str) -> None:
    """Plausibility of one sample's targets (ego frame)."""
    report.add_record(rec)
    for name in ("target_points", "path", "waypoints"):
        if not np.isfinite(np.asarray(getattr(rec, name), dtype=np.float64)).all():
            report.error(file, name, "non-finite values")
            return
    tps = np.asarray(rec.target_points, dtype=np.float64)
    for k, (x, y) in enumerate(tps[:2]):
        if abs(y) > MAX_TP_LATERAL_M or math.hypot(x, y) > MAX_TP_DISTANCE_M:
            report.error(
                file,
                "target_points",
                f"target point {k} at ({x:.1f}, {y:.1f}) m in the ego frame is implausible "
                f"(more than {MAX_TP_LATERAL_M:.0f} m to the side or {MAX_TP_DISTANCE_M:.0f} m away): "
                "heading or coordinate frame wrong?",
            )
            break
    if not 0.0 <= rec.speed <= MAX_SPEED_MPS:
        report.error(file, "speed", f"{rec.speed:.2f} m/s outside [0, {MAX_SPEED_MPS:.0f}]")
    wp = np.asarray(rec.waypoints, dtype=np.float64)
    reach = float(np.linalg.norm(wp[-1])) if len(wp) else 0.0
    if reach > MAX_SPEED_MPS * 0.5 * len(wp) + 1.0:
        report.error(file, "waypoints", f"last waypoint {reach:.1f} m away: faster than {MAX_SPEED_MPS:.0f} m/s")


def _check_numbering(report: DoctorReport, files: list[Path], folder: Path) -> list[int]:
    ids = []
    for path in files:
        try:
            ids.append(int(path.name.split(".")[0]))
        except ValueError:
            report.error(path, None, "file name is not a frame number")
    for a, b in zip(ids, ids[1:]):
        if b - a > 1:
            report.warning(folder, "frame", f"frame numbers jump from {a} to {b} ({b - a - 1} missing)")
    return ids


def _check_timestamps(report: DoctorReport, stamps: list[tuple[Path, object]]) -> None:
    prev = None
    for path, ts in stamps:
        if _bad_number(ts):
            report.error(path, "timestamp", f"not a number ({ts!r})")
            continue
        if prev is not None and float(ts) <= prev:
            report.error(path, "timestamp", f"{float(ts)} not after the previous frame's {prev} (non-monotonic)")
        prev = float(ts)


def _check_image(report: DoctorReport, path: Path, listing: set[str], fld: str, fast: bool) -> None:
    if path.name not in listing:
        report.error(path, fld, "image missing")
        return
    if fast:
        return
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        report.error(path, fld, f"corrupt image ({exc})")


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


# ------------------------------------------------------------------------------------------ real layouts
@dataclass(frozen=True)
class _Layout:
    marker: str  # annotation folder name
    image_dir: str
    digits: int
    position: tuple[str, ...]  # required number fields (errors when missing / None / NaN)
    points: tuple[str, ...]  # required [x, y] fields
    gaps: tuple[str, ...]  # filled by the reader: None / NaN is a warning


B2D = _Layout(
    "anno",
    "camera/rgb_front",
    5,
    ("x", "y", "x_command_near", "y_command_near", "x_command_far", "y_command_far"),
    (),
    ("theta", "speed"),
)
PDM = _Layout("measurements", "rgb", 4, (), ("target_point", "target_point_next"), ("speed",))


def _check_annotation(report: DoctorReport, lay: _Layout, path: Path, m: dict) -> None:
    for key in lay.position:
        if key not in m:
            report.error(path, key, "missing")
        elif _bad_number(m[key]):
            report.error(path, key, f"None / NaN / not a number ({m[key]!r})")
    for key in lay.points:
        if key not in m:
            report.error(path, key, "missing")
        elif _bad_points(m[key]):
            report.error(path, key, f"not a finite [x, y] pair ({m[key]!r})")
    for key in lay.gaps:
        if key not in m:
            report.error(path, key, "missing")
        elif _bad_number(m[key]):
            report.warning(path, key, f"None / NaN ({m[key]!r}): filled from the neighbouring frames")
    if lay is PDM:
        if "ego_matrix" in m:
            if _bad_points(m["ego_matrix"], 16):
                report.error(path, "ego_matrix", "not a finite 4x4 matrix")
        elif "pos_global" not in m or _bad_points(m["pos_global"]):
            report.error(path, "pos_global", "missing or not finite (and no ego_matrix)")
        elif _bad_number(m.get("theta")):
            report.error(path, "theta", f"None / NaN ({m.get('theta')!r}) and no ego_matrix")
        if "route" in m and m["route"] is not None:
            from automot.training.data.pdm_lite import route_path

            if route_path(m["route"]) is None:
                report.warning(path, "route", "unusable (fewer than 20 finite points): the driven path is used")


def _check_real(report: DoctorReport, root: Path, lay: _Layout, fast: bool) -> None:
    from automot.training.data.bench2drive import _load_json_gz, find_routes, read_b2d_route
    from automot.training.data.pdm_lite import read_pdm_route

    routes = find_routes(root, lay.marker, max_depth=4)
    if not routes:
        raise DatasetError(f"{root}: no route folders with {lay.marker}/ (not a {report.format} dataset)")
    report.routes = len(routes)
    for route in routes:
        files = sorted((route / lay.marker).glob("*.json.gz"))
        if not files:
            report.error(route / lay.marker, None, "no *.json.gz files")
            continue
        report.frames += len(files)
        ids = _check_numbering(report, files, route / lay.marker)
        images = route / lay.image_dir
        listing = _listing(images)
        for frame in ids:
            _check_image(report, images / f"{frame:0{lay.digits}d}.jpg", listing, "image", fast)
        picked = [files[0], files[-1]] if fast else files
        stamps, valid_gap = [], {k: False for k in lay.gaps}
        for path in dict.fromkeys(picked):
            try:
                m = _load_json_gz(path)
            except DatasetError as exc:
                report.error(path, None, str(exc).removeprefix(f"{path}: "))
                continue
            if not isinstance(m, dict):
                report.error(path, None, "not a JSON object")
                continue
            _check_annotation(report, lay, path, m)
            for k in lay.gaps:
                valid_gap[k] |= k in m and not _bad_number(m[k])
            if "timestamp" in m:
                stamps.append((path, m["timestamp"]))
        _check_timestamps(report, stamps)
        if lay is PDM and has_bev_inputs(route):
            check_route_bev(report, route, ids, lay.digits, fast)
        if fast:
            continue
        for k, ok in valid_gap.items():
            if not ok:
                report.error(route / lay.marker, k, "no valid value in any frame")
        try:
            ep = read_b2d_route(route) if lay is B2D else read_pdm_route(route)
        except DatasetError as exc:
            report.error(route, None, f"route unreadable by the trainer's reader: {exc}")
            continue
        for rec in ep.records:
            check_record(report, rec, route / lay.marker / f"{rec.frame:0{lay.digits}d}.json.gz")


# ------------------------------------------------------------------------------------------ automot format
def _check_automot(report: DoctorReport, root: Path, fast: bool, camera: str | None) -> None:
    from automot.training.data.automot_format import FRAMES, SAMPLES, read_meta

    meta = read_meta(root)  # not a dataset root at all: DatasetError (exit 2), like the reader
    cam = camera or next(iter(meta.cameras), None)
    if cam not in meta.cameras:
        raise DatasetError(f"{root / 'meta.json'}: no camera {cam!r} (cameras: {sorted(meta.cameras)})")
    episodes = sorted(p for p in root.iterdir() if p.is_dir() and (p / SAMPLES).is_file())
    if not episodes:
        raise DatasetError(f"{root}: no episode folders with {SAMPLES}")
    report.routes = len(episodes)
    for folder in episodes:
        images = folder / FRAMES / cam
        listing = _listing(images)
        report.frames += sum(1 for n in listing if n.endswith("." + meta.image_format))
        prev = None
        with open(folder / SAMPLES) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{folder / SAMPLES}:{line_no}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    report.error(where, None, f"invalid JSON ({exc})")
                    continue
                if not isinstance(row, dict):
                    report.error(where, None, "not a JSON object")
                    continue
                bad = [k for k in ("speed",) if k in row and _bad_number(row[k])]
                bad += [k for k in ("target_points", "path", "waypoints") if k in row and _bad_points(row[k])]
                for k in bad:
                    report.error(where, k, f"None / NaN / malformed ({str(row[k])[:60]})")
                if bad:
                    continue
                try:
                    rec = SampleRecord.from_json(row, where)
                    rec.validate(where)
                except DatasetError as exc:
                    report.error(where, None, str(exc).removeprefix(f"{where}: "))
                    continue
                if prev is not None and rec.frame <= prev:
                    report.error(where, "frame", f"frame {rec.frame} not after the previous sample's {prev}")
                prev = rec.frame
                for fld, frames in (("frame", [rec.frame]), ("history", rec.history)):
                    for fr in frames:
                        _check_image(report, images / f"{fr:05d}.{meta.image_format}", listing, fld, fast)
                if fast:
                    report.add_record(rec)
                else:
                    check_record(report, rec, where)


def run_doctor(
    root: str | Path, fmt: str | None = None, *, fast: bool = False, max_errors: int = 0, camera: str | None = None
) -> DoctorReport:
    """Check a dataset folder; the report counts everything and lists up to MAX_LISTED findings per kind."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    fmt = fmt or detect_format(root)
    if fmt not in FORMATS:
        raise DatasetError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    report = DoctorReport(dataset=str(root), format=fmt, fast=fast, max_errors=max_errors)
    if fmt == "automot":
        _check_automot(report, root, fast, camera)
    else:
        _check_real(report, root, B2D if fmt == "bench2drive" else PDM, fast)
    finish_bev(report)
    return report.finish()
