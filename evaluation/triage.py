"""Failure triage for the evaluation report: where the driving score was lost.

Every failed or penalised job (DS < 100) is grouped three ways -- by the route XML's scenario type, by the type of
its first infraction and by the Bench2Drive ability of its scenario -- with the number of jobs and the **DS lost**:
the points of the mean DS that group costs, sum(100 - DS) / number of jobs, so the groups of one table add up to
100 - DS. For each such job the report shows the simulated time of its first infraction, a still frame and a
clip of +-3 s cut from the route's video around it.

The video has one frame per tick (agent/recorder.py), so the tick of the first infraction in ``ticks.jsonl`` is its
frame; its time in the video is that index over the video's frame rate. Frames and clips are cut with the ffmpeg
binary of ``imageio-ffmpeg`` (H.264, playable in browsers); without it, OpenCV writes the still frame and no clip.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automot.evaluation import metrics as M

TRIAGE_DIR = "report_files/triage"
CLIP_HALF_S = 3.0

__all__ = ["triage"]


def _ticks(route_dir: Path) -> list[float]:
    path = next(iter(sorted(route_dir.rglob("ticks.jsonl"))), None) if route_dir.is_dir() else None
    times: list[float] = []
    if path is None:
        return times
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                times.append(float(json.loads(line)["sim_time"]))
            except (ValueError, KeyError, TypeError):
                continue
    return times


def _video_info(video: Path) -> tuple[float, int] | None:
    """(frames per second, frame count) of a video (None when OpenCV cannot read it)."""
    try:
        import cv2
    except ImportError:
        return None
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return (float(fps), count) if fps and fps > 0 and count > 0 else None


def _ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - not installed / no binary for this platform
        return None


def _cut(video: Path, frame: int, fps: float, half_s: float, still: Path, clip: Path) -> tuple[bool, bool]:
    """Write ``still`` (frame ``frame``) and ``clip`` (its time +- ``half_s`` of video time); (still, clip) written."""
    from automot.fsio import atomic_path

    still.parent.mkdir(parents=True, exist_ok=True)
    exe = _ffmpeg()
    got_still = got_clip = False
    at_s = frame / fps
    if exe:
        start = max(0.0, at_s - half_s)
        with atomic_path(clip) as tmp:
            cmd = [exe, "-y", "-loglevel", "error", "-ss", f"{start:.3f}", "-i", str(video), "-t", f"{2 * half_s:.3f}"]
            cmd += ["-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)]
            got_clip = subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0 and tmp.stat().st_size > 0
        if not got_clip:
            clip.unlink(missing_ok=True)
    try:
        import cv2

        cap = cv2.VideoCapture(str(video))
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, frame = cap.read()
        cap.release()
        if ok:
            ok, buf = cv2.imencode(".jpg", frame)
            if ok:
                from automot.fsio import atomic_write_bytes

                atomic_write_bytes(still, buf.tobytes())
                got_still = True
    except ImportError:
        pass
    return got_still, got_clip


def cut_media(video: Path, t: float, base: Path, root: Path) -> dict[str, Any]:
    """A still at simulated time ``t`` of a route's video and a clip of +-3 simulated seconds around it, written as
    ``<base>_first.jpg`` / ``<base>_clip.mp4``: ``{"still", "clip"}`` (paths relative to ``root``, None when not
    written) and ``video_time``; {} when the route has no readable video or ticks.jsonl beside it."""
    ticks = _ticks(video.parent)
    info = _video_info(video) if video.is_file() else None
    if not ticks or not info:
        return {}
    fps, count = info
    tick = min(range(len(ticks)), key=lambda i: abs(ticks[i] - t))
    # one frame per tick; a video that dropped frames is shorter: its last frame then
    frame = min(tick, count - 1)
    tick_s = (ticks[-1] - ticks[0]) / (len(ticks) - 1) if len(ticks) > 1 else 1.0 / fps
    half = CLIP_HALF_S / max(tick_s, 1e-6) / fps  # 3 simulated seconds in video time
    still, clip = base.with_name(base.name + "_first.jpg"), base.with_name(base.name + "_clip.mp4")
    got_still, got_clip = _cut(video, frame, fps, half, still, clip)
    return {
        "video_time": round(frame / fps, 3),
        "still": still.relative_to(root).as_posix() if got_still else None,
        "clip": clip.relative_to(root).as_posix() if got_clip else None,
    }


def _scenario_types(routes_xml: str | None) -> dict[str, str | None]:
    if not routes_xml or not Path(routes_xml).is_file():
        return {}
    return {r.id: r.scenario_type for r in M.parse_routes_xml(routes_xml)}


def _group(items: Sequence[tuple[str, float]], n_jobs: int) -> list[dict[str, Any]]:
    groups: dict[str, list[float]] = {}
    for key, lost in items:
        groups.setdefault(key, []).append(lost)
    rows = [{"group": k, "jobs": len(v), "ds_lost": sum(v) / n_jobs} for k, v in groups.items()]
    return sorted(rows, key=lambda r: (-r["ds_lost"], r["group"]))


def triage(out: Path, summary: Mapping[str, Any], routes_xml: str | None = None, media: bool = True) -> dict[str, Any]:
    """``{"by_scenario", "by_first_infraction", "by_ability", "jobs"}`` over the summary's per-route rows; with
    ``media``, stills and clips under ``DIR/report_files/triage/`` (paths relative to ``out``)."""
    out = Path(out)
    rows = list(summary.get("routes") or [])
    n = max(1, len(rows))
    types = _scenario_types(routes_xml)
    by_scenario, by_first, by_ability, jobs = [], [], [], []
    for row in rows:
        ds = float(row.get("ds") or 0.0)
        if row.get("success") and ds >= 100.0:
            continue
        lost = 100.0 - ds
        rid = M.xml_route_id(row)
        scenario = types.get(rid) or row.get("scenario") or "unknown"
        first = row.get("first_infraction") or ("missing record" if row.get("missing") else "none (not completed)")
        abilities = M.abilities_of(types.get(rid)) if types else []
        by_scenario.append((scenario, lost))
        by_first.append((first, lost))
        by_ability += [(a, lost) for a in abilities] or [("(no ability)", lost)]
        job: dict[str, Any] = {
            "job": row.get("folder"),
            "route_id": row.get("route_id"),
            "ds": ds,
            "scenario": scenario,
            "first_infraction": row.get("first_infraction"),
            "time": row.get("first_infraction_time"),
            "still": None,
            "clip": None,
        }
        t = row.get("first_infraction_time")
        if media and t is not None and row.get("video"):
            job.update(cut_media(out / row["video"], float(t), out / TRIAGE_DIR / str(row.get("folder")), out))
        jobs.append(job)
    jobs.sort(key=lambda j: (j["ds"], str(j["job"])))
    return {
        "by_scenario": _group(by_scenario, n),
        "by_first_infraction": _group(by_first, n),
        "by_ability": _group(by_ability, n),
        "jobs": jobs,
        "note": "DS lost = sum(100 - DS) over the group's jobs / all jobs: the points of the mean DS it costs",
    }


# -- the report's section ------------------------------------------------------------------------------------------

_TABLES = (("by_scenario", "scenario type"), ("by_first_infraction", "first infraction"), ("by_ability", "ability"))


def _time(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1f} s"


def triage_markdown(t: Mapping[str, Any]) -> str:
    if not t["jobs"]:
        return ""
    lines = ["", "## Failure triage", "", f"_{t['note']}_"]
    for key, label in _TABLES:
        lines += ["", f"| {label} | jobs | DS lost |", "|---|---:|---:|"]
        lines += [f"| {g['group']} | {g['jobs']} | {g['ds_lost']:.2f} |" for g in t[key]]
    lines += ["", "| job | DS | scenario | first infraction | time | frame | clip |", "|---|---:|---|---|---:|---|---|"]
    for j in t["jobs"]:
        still = f"![still]({j['still']})" if j.get("still") else "-"
        clip = f"[clip]({j['clip']})" if j.get("clip") else "-"
        lines.append(
            f"| {j['job']} | {j['ds']:.2f} | {j['scenario']} | {j['first_infraction'] or '-'} | {_time(j['time'])} "
            f"| {still} | {clip} |"
        )
    return "\n".join(lines) + "\n"


def triage_html(t: Mapping[str, Any], out: Path) -> str:
    """The section of report.html: the stills embedded (base64 JPEG), the clips linked (relative)."""
    import base64
    import html

    if not t["jobs"]:
        return ""
    e = html.escape
    parts = [f'<h2>Failure triage</h2><p class="meta">{e(t["note"])}</p><div class="plots">']
    for key, label in _TABLES:
        parts.append(f'<div><table id="triage-{key}"><tr><th>{e(label)}</th><th>jobs</th><th>DS lost</th></tr>')
        for g in t[key]:
            parts.append(
                f'<tr><td>{e(str(g["group"]))}</td><td class="num">{g["jobs"]}</td>'
                f'<td class="num">{g["ds_lost"]:.2f}</td></tr>'
            )
        parts.append("</table></div>")
    parts.append('</div><table id="triage-jobs"><tr><th>job</th><th>DS</th><th>scenario</th><th>first infraction</th>')
    parts.append("<th>time</th><th>frame</th><th>clip</th></tr>")
    for j in t["jobs"]:
        still = "-"
        if j.get("still") and (Path(out) / j["still"]).is_file():
            data = base64.b64encode((Path(out) / j["still"]).read_bytes()).decode("ascii")
            still = (
                f'<img class="still" id="still-{e(str(j["job"]))}" alt="first infraction" height="96" '
                f'src="data:image/jpeg;base64,{data}">'
            )
        clip = f'<a class="clip" href="{e(j["clip"])}">±3 s clip</a>' if j.get("clip") else "-"
        parts.append(
            f'<tr><td>{e(str(j["job"]))}</td><td class="num">{j["ds"]:.2f}</td><td>{e(str(j["scenario"]))}</td>'
            f'<td>{e(str(j["first_infraction"] or "-"))}</td><td class="num">{_time(j["time"])}</td>'
            f"<td>{still}</td><td>{clip}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)
