"""The evaluation report: ``DIR/report.md`` and a self-contained ``DIR/report.html`` from ``DIR/merged.json``.

Contents: the summary table (DS, SR, RC, penalty, efficiency, smoothness, the five abilities + mean, routes
scored / missing / failed), the notes of the metrics (e.g. Traffic_Signs without partial credit), per-ability
bars, a DS histogram and infraction counts (PNG plots in ``DIR/report_files/``, matplotlib), the infraction table
(count and per km) and a per-route table (status, DS, RC, first infraction and its simulated time, the video).

``report.html`` needs nothing else: the plots are embedded as base64 PNG, no script, no network; a route's video
is a relative link (``routes/<id>/video.mp4``) written only when that file exists. ``report.md`` links the PNG
files. Every file is written atomically (`automot.fsio`).

:func:`format_progress` is the one-line live progress the orchestrator prints while routes run.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automot.errors import UsageError
from automot.evaluation import merge as merge_mod
from automot.evaluation.metrics import ABILITIES, INFRACTION_KEYS
from automot.fsio import atomic_write_bytes, atomic_write_text

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "report_files"
ABILITY_NAMES = tuple(ABILITIES)

__all__ = [
    "format_progress",
    "headline",
    "report_main",
    "seed_rows",
    "summary_rows",
    "uncertainty_rows",
    "write_report",
]


# ------------------------------------------------------------------------------------------- progress


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def format_progress(
    done: int, running: int, failed: int, ds_so_far: float | None, eta_s: float | None, total: int | None = None
) -> str:
    """``routes 12/220 done, 2 running, 1 failed | DS so far 45.31 | ETA 1h02m`` (``failed`` are included in
    ``done``; DS so far is the mean over the routes done)."""
    count = f"{done}/{total}" if total is not None else str(done)
    ds = "--" if ds_so_far is None or not math.isfinite(ds_so_far) else f"{ds_so_far:.2f}"
    return f"routes {count} done, {running} running, {failed} failed | DS so far {ds} | ETA {format_duration(eta_s)}"


# ------------------------------------------------------------------------------------------- formatting


def _num(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def _pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.2f}%"


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, formatted value) rows of the summary table (the HTML, the markdown and the tests use these)."""
    rows = [
        ("Driving score", _num(summary.get("driving_score"))),
        ("Success rate", _pct(summary.get("success_rate"))),
        ("Route completion", _num(summary.get("route_completion"))),
        ("Infraction penalty", _num(summary.get("infraction_penalty"), 3)),
        ("Driving efficiency", _num(summary.get("driving_efficiency"))),
        ("Smoothness", _pct(summary.get("smoothness"))),
    ]
    abilities = (summary.get("abilities") or {}).get("scores") or {}
    for name in (*ABILITY_NAMES, "mean"):
        label = "Ability mean" if name == "mean" else f"Ability {name.replace('_', ' ')}"
        rows.append((label, _pct(abilities.get(name)) if abilities else "n/a"))
    rows += [
        ("Routes scored / expected", f"{summary.get('records', 0)} / {summary.get('route_count', 0)}"),
        ("Successes", str(summary.get("successes", 0))),
        ("Failed", str(summary.get("failed", 0))),
        ("Missing (scored 0)", str(len(summary.get("missing") or []))),
        ("Km driven", _num(summary.get("km_driven"), 3)),
    ]
    return rows


def _route_label(row: Mapping[str, Any]) -> str:
    """The record's route_id; with the folder name too when that is not the route's XML id (embedded seeds)."""
    route_id, folder = str(row.get("route_id") or ""), str(row.get("folder") or "")
    parts = route_id.split("_")
    if not route_id or (len(parts) > 1 and parts[1] == folder):
        return route_id or folder
    return f"{folder} ({route_id})"


def seed_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(route, seeds, DS mean +- std, RC mean +- std, success) rows over seeds, the overall row last."""
    seeds = summary.get("seeds")
    if not seeds:
        return []
    rows = []
    for name, g in seeds["routes"].items():
        rows.append(
            (
                name,
                str(g["seeds"]),
                f"{g['ds_mean']:.2f} ± {g['ds_std']:.2f}",
                f"{g['rc_mean']:.2f} ± {g['rc_std']:.2f}",
                _pct(g["success"]),
            )
        )
    n = len(seeds["ds_per_seed"])
    rows.append(("all routes (DS per seed)", str(n), f"{seeds['ds_mean']:.2f} ± {seeds['ds_std']:.2f}", "", ""))
    return rows


# Min-speed entries are readings of the ego's speed against the traffic's (their mean is the driving efficiency),
# not infractions: the infractions table leaves them out and a line of their own reports them.
INFRACTION_ROWS = [k for k in INFRACTION_KEYS if k != "min_speed_infractions"]


def min_speed_line(summary: Mapping[str, Any]) -> str:
    """One line for the min-speed readings: how many, and the driving efficiency they give."""
    n = (summary.get("infraction_counts") or {}).get("min_speed_infractions", 0)
    return (
        f"Min-speed readings (not infractions): {n}; their mean per route, the driving efficiency, is "
        f"{_num(summary.get('driving_efficiency'))}."
    )


def counts_per_km(summary: Mapping[str, Any]) -> dict[str, float]:
    """Infractions per km driven, every key in the same unit (count / km). The leaderboard's own
    ``global_record.infractions`` gives ``outside_route_lanes`` in km instead (kept as it is in results.json)."""
    counts = summary.get("infraction_counts") or {}
    km = float(summary.get("km_driven") or 0.0)
    return {k: (round(counts.get(k, 0) / km, 3) if km > 0 else 0.0) for k in INFRACTION_KEYS}


def uncertainty_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, mean, sample std over seeds, 95 % CI) rows of ``summary["uncertainty"]`` (empty without one)."""
    u = summary.get("uncertainty")
    if not u:
        return []
    named = [("Driving score", u["DS"]), ("Success rate (%)", u["SR"]), ("Route completion", u["RC"])]
    named += [(f"Ability {k.replace('_', ' ')} (%)", v) for k, v in sorted((u.get("abilities") or {}).items())]
    rows = []
    for label, d in named:
        ci = d.get("ci95")
        rows.append(
            (
                label,
                _num(d.get("mean")),
                _num(d.get("std_seeds")) if d.get("std_seeds") is not None else f"n/a ({d.get('seeds', 0)} seed)",
                f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "n/a",
            )
        )
    return rows


def uncertainty_method(summary: Mapping[str, Any]) -> str:
    from automot.evaluation.stats import method_text

    u = summary.get("uncertainty") or {}
    return f"{method_text(u['method'])}; {u.get('units', '')}" if u.get("method") else ""


def headline(s: Mapping[str, Any]) -> str:
    """``DS 50.00 [30.00, 70.00]  SR 33.33% [0.00, 66.67]  RC ...  (6/6 routes scored; 95 % CI ...)``: the line an
    evaluation ends with (the interval: ``summary["uncertainty"]``, omitted when absent)."""
    u = s.get("uncertainty") or {}

    def ci(key: str) -> str:
        c = (u.get(key) or {}).get("ci95")
        return f" [{c[0]:.2f}, {c[1]:.2f}]" if c else ""

    text = (
        f"DS {s['driving_score']:.2f}{ci('DS')}  SR {100 * s['success_rate']:.2f}%{ci('SR')}  "
        f"RC {s['route_completion']:.2f}{ci('RC')}  ({s['records']}/{s['route_count']} routes scored"
    )
    if u.get("method"):
        text += f"; 95 % bootstrap CI over routes, {u['method']['resamples']} resamples"
    return text + ")"


def _route_cells(row: Mapping[str, Any]) -> dict[str, str]:
    first = row.get("first_infraction")
    return {
        "route": _route_label(row),
        "status": str(row.get("status")) + (f" ({row['failure_reason']})" if row.get("failure_reason") else ""),
        "ds": _num(row.get("ds")),
        "rc": _num(row.get("rc")),
        "first": first or "-",
        "message": row.get("first_infraction_message") or "",
        "time": _num(row.get("first_infraction_time"), 1, " s") if first else "-",
    }


# ----------------------------------------------------------------------------------------------- plots


def _plots(summary: Mapping[str, Any], folder: Path) -> tuple[dict[str, Path], str | None]:
    """PNG plots (name -> path); (``{}``, reason) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, "plots need matplotlib (pip install -e .[eval])"

    def save(fig: Any, name: str) -> Path:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        return atomic_write_bytes(folder / f"{name}.png", buf.getvalue())

    out: dict[str, Path] = {}
    abilities = (summary.get("abilities") or {}).get("scores") or {}
    if abilities:
        names = [n for n in (*ABILITY_NAMES, "mean")]
        values = [100 * (abilities.get(n) or 0.0) for n in names]
        fig, ax = plt.subplots(figsize=(6.4, 3.2))
        bars = ax.bar([n.replace("_", " ") for n in names], values, color=["#4c78a8"] * 5 + ["#f58518"])
        for bar, name, value in zip(bars, names, values):
            text = "n/a" if abilities.get(name) is None else f"{value:.1f}"
            ax.text(bar.get_x() + bar.get_width() / 2, value + 1, text, ha="center", fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("success %")
        ax.set_title("Multi-ability")
        ax.tick_params(axis="x", labelsize=8)
        out["abilities"] = save(fig, "abilities")

    ds = [float(r.get("ds") or 0.0) for r in summary.get("routes") or []]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.hist(ds, bins=[i * 10 for i in range(11)], color="#4c78a8", edgecolor="white")
    ax.set_xlabel("driving score per route (missing = 0)")
    ax.set_ylabel("routes")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"DS histogram ({len(ds)} routes)")
    out["ds_hist"] = save(fig, "ds_hist")

    counts = summary.get("infraction_counts") or {}
    keys = INFRACTION_ROWS
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.barh(keys[::-1], [counts.get(k, 0) for k in keys[::-1]], color="#e45756")
    ax.set_xlabel("count")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Infractions (all routes)")
    ax.tick_params(axis="y", labelsize=8)
    out["infractions"] = save(fig, "infractions")
    return out, None


# ------------------------------------------------------------------------------------------------ writers


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(
    summary: Mapping[str, Any], plots: Mapping[str, Path], out_dir: Path, notes: Sequence[str], header: Sequence = ()
) -> str:
    lines = ["# Evaluation report", ""]
    for label, text, link in header:
        lines.append(
            f"- **{label}**: " + (f"[{text}]({link})" if link else f"`{text}`" if label == "Command" else text)
        )
    lines += ["", "| metric | value |", "|---|---:|"] if header else ["| metric | value |", "|---|---:|"]
    lines += [f"| {label} | {value} |" for label, value in summary_rows(summary)]
    if uncertainty_rows(summary):
        lines += ["", "## Uncertainty", "", f"_{uncertainty_method(summary)}_", ""]
        lines += ["| metric | mean | std over seeds | 95 % CI |", "|---|---:|---:|---:|"]
        lines += [f"| {' | '.join(map(_md_cell, r))} |" for r in uncertainty_rows(summary)]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_md_cell(n)}" for n in notes]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({path.relative_to(out_dir).as_posix()})" for name, path in plots.items()]
    if seed_rows(summary):
        lines += ["", "## Over seeds (mean ± sample std)", "", "| route | seeds | DS | RC | success |"]
        lines += ["|---|---:|---:|---:|---:|"] + [f"| {' | '.join(map(_md_cell, r))} |" for r in seed_rows(summary)]
    lines += ["", "## Infractions", "", "| infraction | count | per km |", "|---|---:|---:|"]
    per_km = counts_per_km(summary)
    counts = summary.get("infraction_counts") or {}
    lines += [f"| {k} | {counts.get(k, 0)} | {per_km.get(k, 0)} |" for k in INFRACTION_ROWS]
    lines += ["", min_speed_line(summary)]
    lines += ["", "## Routes", "", "| route | status | DS | RC | first infraction | time | video |"]
    lines += ["|---|---|---:|---:|---|---:|---|"]
    for row in summary.get("routes") or []:
        c = _route_cells(row)
        video = f"[video]({row['video']})" if row.get("video") else "-"
        first = c["first"] if not c["message"] else f"{c['first']}: {c['message']}"
        lines.append(
            f"| {_md_cell(c['route'])} | {_md_cell(c['status'])} | {c['ds']} | {c['rc']} | {_md_cell(first)} "
            f"| {c['time']} | {video} |"
        )
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:4px 8px;font-size:14px}
th{background:#f2f2f2;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.missing td{color:#a00}tr.success td:first-child{border-left:4px solid #54a24b}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots div{flex:1 1 480px}.plots img{max-width:100%}.notes li{color:#8a5a00}h1{margin-bottom:4px}.meta{color:#666}
"""


def _html(
    summary: Mapping[str, Any], plots: Mapping[str, Path], notes: Sequence[str], stamp: str, header: Sequence = ()
) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Evaluation report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Evaluation report</h1>",
        f'<p class="meta">generated {e(stamp)} from merged.json</p>',
        *_header_html(header),
        '<h2>Summary</h2><table id="summary"><tr><th>metric</th><th>value</th></tr>',
    ]
    for label, value in summary_rows(summary):
        key = label.lower().replace(" ", "_").replace("/", "").replace("(", "").replace(")", "")
        parts.append(f'<tr data-metric="{e(key)}"><td>{e(label)}</td><td class="num">{e(value)}</td></tr>')
    parts.append("</table>")
    if uncertainty_rows(summary):
        parts.append(
            f'<h2>Uncertainty</h2><p class="meta" id="uncertainty-method">{e(uncertainty_method(summary))}</p>'
        )
        parts.append(
            '<table id="uncertainty"><tr><th>metric</th><th>mean</th><th>std over seeds</th><th>95 % CI</th></tr>'
        )
        for r in uncertainty_rows(summary):
            parts.append(f"<tr><td>{e(r[0])}</td>" + "".join(f'<td class="num">{e(c)}</td>' for c in r[1:]) + "</tr>")
        parts.append("</table>")
    if notes:
        parts.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    if plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        for name, path in plots.items():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f'<div><img alt="{e(name)}" id="plot-{e(name)}" src="data:image/png;base64,{data}"></div>')
        parts.append("</div>")
    if seed_rows(summary):
        parts.append('<h2>Over seeds (mean ± sample std)</h2><table id="seeds"><tr><th>route</th><th>seeds</th>')
        parts.append("<th>DS</th><th>RC</th><th>success</th></tr>")
        for r in seed_rows(summary):
            parts.append("<tr>" + "".join(f'<td class="num">{e(c)}</td>' for c in r) + "</tr>")
        parts.append("</table>")
    per_km = counts_per_km(summary)
    counts = summary.get("infraction_counts") or {}
    parts.append(
        '<h2>Infractions</h2><table id="infractions"><tr><th>infraction</th><th>count</th><th>per km</th></tr>'
    )
    for k in INFRACTION_ROWS:
        parts.append(
            f'<tr><td>{e(k)}</td><td class="num">{counts.get(k, 0)}</td><td class="num">{per_km.get(k, 0)}</td></tr>'
        )
    parts.append(f'</table><p id="min-speed">{e(min_speed_line(summary))}</p>')
    parts.append(
        '<h2>Routes</h2><table id="routes"><tr><th>route</th><th>status</th><th>DS</th><th>RC</th>'
        "<th>first infraction</th><th>time</th><th>video</th></tr>"
    )
    for row in summary.get("routes") or []:
        c = _route_cells(row)
        cls = "missing" if row.get("missing") else ("success" if row.get("success") else "")
        video = f'<a class="video" href="{e(row["video"])}">video</a>' if row.get("video") else "-"
        first = f'<span title="{e(c["message"])}">{e(c["first"])}</span>' if c["message"] else e(c["first"])
        parts.append(
            f'<tr class="{cls}"><td>{e(c["route"])}</td><td>{e(c["status"])}</td><td class="num">{c["ds"]}</td>'
            f'<td class="num">{c["rc"]}</td><td>{first}</td><td class="num">{e(c["time"])}</td><td>{video}</td></tr>'
        )
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"


def _header_html(header: Sequence) -> list[str]:
    if not header:
        return []
    e = html.escape
    items = []
    for label, text, link in header:
        body = (
            f'<a href="{e(link)}">{e(text)}</a>'
            if link
            else (f"<code>{e(text)}</code>" if label == "Command" else e(text))
        )
        key = label.lower().replace(" ", "-")
        items.append(f'<li id="header-{e(key)}"><b>{e(label)}</b>: {body}</li>')
    return ['<ul id="header">' + "".join(items) + "</ul>"]


def write_report(
    out_dir: str | os.PathLike, live: Sequence[tuple[str, str, str | None]] = (), media: bool = True
) -> dict[str, Any]:
    """Write ``report.md``, ``report.html`` and the PNG plots from ``DIR/merged.json``; return their paths and
    the summary (``{"markdown", "html", "plots", "summary", "triage"}``). ``media``: cut the triage's stills and
    clips (the live report leaves them to the final one)."""
    out = Path(out_dir)
    merged = merge_mod.load_merged(out)
    summary = merged["summary"]
    plots, plot_note = _plots(summary, out / PLOTS_DIR)
    notes = list(summary.get("notes") or [])
    if plot_note:
        notes.append(plot_note)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    from automot.evaluation import triage as triage_mod
    from automot.evaluation.identity import header_lines

    header = [*live, *header_lines(out)]  # ``live``: the progress lines while the evaluation runs
    tri = triage_mod.triage(out, summary, merged.get("routes_xml"), media=media)
    md = atomic_write_text(
        out / REPORT_MD, _markdown(summary, plots, out, notes, header) + triage_mod.triage_markdown(tri)
    )
    page_text = _html(summary, plots, notes, stamp, header)
    page_text = page_text.replace("</body></html>", triage_mod.triage_html(tri, out) + "</body></html>")
    page = atomic_write_text(out / REPORT_HTML, page_text)
    return {"markdown": md, "html": page, "plots": dict(plots), "summary": summary, "triage": tri}


def _route_ids_in(out: Path) -> list[str]:
    routes = out / merge_mod.ROUTES_DIR
    if not routes.is_dir():
        return []
    return sorted(p.name for p in routes.iterdir() if p.is_dir() and not p.name.startswith("."))


def report_main(out_dir: str | os.PathLike, *, routes_xml: str | os.PathLike | None = None) -> int:
    """``automot eval report DIR``: merge again (the route set, route file and repetitions recorded in
    ``merged.json``; without one, the route folders present) and write the report. Returns the exit code."""
    out = Path(out_dir)
    if not out.is_dir():
        raise UsageError(f"eval report: {out} is not a folder")
    previous: dict[str, Any] = {}
    if (out / merge_mod.MERGED_NAME).is_file():
        try:
            previous = merge_mod.load_merged(out)
        except Exception:  # not ours (e.g. Bench2Drive's own merged.json): start from the folders
            previous = {}
    route_ids = previous.get("route_ids") or _route_ids_in(out)
    if not route_ids:
        raise UsageError(f"eval report: {out} has no {merge_mod.ROUTES_DIR}/<route_id>/ folders and no merged.json")
    xml = routes_xml or previous.get("routes_xml")
    if xml and not Path(xml).is_file():
        xml = None
    from automot.evaluation.metric_info import write_missing

    write_missing(out, route_ids)  # embedded routes recorded before metric_info.json was derived
    merge_mod.merge_eval(out, route_ids, routes_xml=xml, repetitions=int(previous.get("repetitions") or 1))
    written = write_report(out)
    print(headline(written["summary"]))
    for key in ("markdown", "html"):
        print(f"wrote {written[key]}")
    return 0
