"""``compare.md`` and the self-contained ``compare.html`` of `automot eval compare` (from the ``compare.json`` dict).

The page needs nothing else: the ΔDS-per-job plot is an embedded base64 PNG (matplotlib; left out with a note when
it is missing), no script, no network. The per-job table lists the biggest regressions first, with links to the
route's video in A and in B (relative to the page, written only where the video exists).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automot.evaluation import stats

__all__ = ["compare_html", "compare_markdown", "delta_rows"]


def _signed(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:+.{digits}f}"


def _plain(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci(ci: Any) -> str:
    return "n/a" if not ci else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def delta_rows(result: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(metric, A, B, Δ mean, 95 % CI, p) rows: DS, SR, RC, then each ability."""
    rows = []
    named = [("DS", result["delta"]["DS"]), ("SR (%)", result["delta"]["SR"]), ("RC", result["delta"]["RC"])]
    named += [(f"Ability {k.replace('_', ' ')} (%)", v) for k, v in (result["delta"].get("abilities") or {}).items()]
    for label, d in named:
        rows.append(
            (
                label,
                _plain(d.get("a")),
                _plain(d.get("b")),
                _signed(d.get("mean")),
                _ci(d.get("ci95")),
                _p(d.get("p_value")),
            )
        )
    return rows


def _job_label(r: Mapping[str, Any]) -> str:
    return str(r["route_id"]) + ("" if r.get("seed") is None else f" seed {r['seed']}")


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_TRIAGE = (("by_first_infraction_b", "B's first infraction"), ("by_scenario", "scenario type"))


def compare_markdown(result: Mapping[str, Any]) -> str:
    lines = [
        "# Evaluation comparison (B minus A)",
        "",
        f"- A: `{result['a']}`",
        f"- B: `{result['b']}`",
        f"- paired jobs: {result['routes']} over {result['route_groups']} routes",
        f"- method: {stats.method_text(result['method'])}; p-value: {result['method']['test']}",
        "",
        f"**Verdict: {result['verdict']}**",
        "",
        "| metric | A | B | Δ (B − A) | 95 % CI | p |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {' | '.join(map(_md, r))} |" for r in delta_rows(result)]
    flips = result["flips"]
    lines += [
        "",
        "## Flips",
        "",
        f"- success → failure ({len(flips['to_failure'])}): {', '.join(flips['to_failure']) or '-'}",
    ]
    lines += [f"- failure → success ({len(flips['to_success'])}): {', '.join(flips['to_success']) or '-'}"]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {_md(n)}" for n in result["notes"]]
    for key, label in _TRIAGE:
        if result.get("triage", {}).get(key):
            lines += ["", f"## Regressions by {label}", "", f"| {label} | jobs | DS lost |", "|---|---:|---:|"]
            lines += [f"| {_md(g['group'])} | {g['jobs']} | {g['ds_lost']:.2f} |" for g in result["triage"][key]]
    media = [r for r in result["per_route"] if r.get("still_b") or r.get("clip_b")]
    if media:
        lines += [
            "",
            "## Regressions: B's first infraction",
            "",
            "| job | ΔDS | first infraction | time | frame | clip |",
        ]
        lines += ["|---|---:|---|---:|---|---|"]
        for r in media:
            still = f"![still]({r['still_b']})" if r.get("still_b") else "-"
            clip = f"[clip]({r['clip_b']})" if r.get("clip_b") else "-"
            t = r.get("first_infraction_time_b")
            when = "-" if t is None else f"{float(t):.1f} s"
            lines.append(
                f"| {_md(_job_label(r))} | {r['delta_ds']:+.2f} | {_md(r.get('first_infraction_b') or '-')} | {when} "
                f"| {still} | {clip} |"
            )
    lines += ["", "## Infractions per km", "", "| infraction | A | B |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['a']} | {v['b']} |" for k, v in result["infractions_per_km"].items()]
    lines += [
        "",
        "## Per job (biggest regressions first)",
        "",
        "| job | DS A | DS B | ΔDS | success A → B | video A | video B |",
    ]
    lines += ["|---|---:|---:|---:|---|---|---|"]
    for r in result["per_route"]:
        va = f"[A]({r['video_a']})" if r.get("video_a") else "-"
        vb = f"[B]({r['video_b']})" if r.get("video_b") else "-"
        ok = f"{'yes' if r['success_a'] else 'no'} → {'yes' if r['success_b'] else 'no'}"
        lines.append(
            f"| {_md(_job_label(r))} | {r['ds_a']:.2f} | {r['ds_b']:.2f} | {r['delta_ds']:+.2f} | {ok} | {va} | {vb} |"
        )
    return "\n".join(lines) + "\n"


def _plot(result: Mapping[str, Any]) -> str | None:
    """The per-job ΔDS bars as base64 PNG (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    deltas = [r["delta_ds"] for r in result["per_route"]]
    fig, ax = plt.subplots(figsize=(7.0, 3.0))
    ax.bar(range(len(deltas)), deltas, color=["#e45756" if d < 0 else "#54a24b" for d in deltas], width=0.9)
    ax.axhline(0.0, color="#333", linewidth=0.8)
    d = result["delta"]["DS"]
    if d.get("ci95"):
        ax.axhspan(d["ci95"][0], d["ci95"][1], color="#4c78a8", alpha=0.2, label="95 % CI of mean ΔDS")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("paired job (sorted, regressions first)")
    ax.set_ylabel("ΔDS (B − A)")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:4px 8px;font-size:14px}
th{background:#f2f2f2;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.regression td:first-child{border-left:4px solid #e45756}tr.improvement td:first-child{border-left:4px solid #54a24b}
.verdict{font-size:18px;font-weight:600}.meta{color:#666}img{max-width:100%}
"""


def _media_html(result: Mapping[str, Any], folder: Path | None) -> str:
    """B's first infraction on each regressed job: the still embedded (base64 JPEG), the +-3 s clip linked."""
    e = html.escape
    rows = [r for r in result["per_route"] if r.get("still_b") or r.get("clip_b")]
    if not rows:
        return ""
    parts = ['<h2>Regressions: B\'s first infraction</h2><table id="regression-media"><tr><th>job</th><th>ΔDS</th>']
    parts.append("<th>first infraction</th><th>time</th><th>frame</th><th>clip</th></tr>")
    for r in rows:
        still = "-"
        path = Path(folder) / r["still_b"] if folder and r.get("still_b") else None
        if path is not None and path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            still = f'<img class="still" alt="first infraction in B" height="96" src="data:image/jpeg;base64,{data}">'
        clip = f'<a class="clip" href="{e(r["clip_b"])}">±3 s clip</a>' if r.get("clip_b") else "-"
        t = r.get("first_infraction_time_b")
        parts.append(
            f'<tr><td>{e(_job_label(r))}</td><td class="num">{r["delta_ds"]:+.2f}</td>'
            f"<td>{e(str(r.get('first_infraction_b') or '-'))}</td>"
            f'<td class="num">{"-" if t is None else f"{float(t):.1f} s"}</td><td>{still}</td><td>{clip}</td></tr>'
        )
    parts.append("</table>")
    return "\n".join(parts)


def compare_html(result: Mapping[str, Any], folder: Path | None = None) -> str:
    """The self-contained page; ``folder``: where compare.html goes (the stills under it are embedded)."""
    e = html.escape
    m = result["method"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Evaluation comparison</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Evaluation comparison (B minus A)</h1>",
        f'<p class="meta">A: {e(result["a"])}<br>B: {e(result["b"])}<br>{result["routes"]} paired jobs over '
        f"{result['route_groups']} routes</p>",
        f'<p class="verdict" id="verdict">{e(result["verdict"])}</p>',
        f'<p class="meta" id="method">{e(stats.method_text(m))}; p-value: {e(m["test"])}</p>',
        '<table id="delta"><tr><th>metric</th><th>A</th><th>B</th><th>Δ (B − A)</th><th>95 % CI</th><th>p</th></tr>',
    ]
    for row in delta_rows(result):
        parts.append(
            f'<tr data-metric="{e(row[0])}"><td>{e(row[0])}</td>'
            + "".join(f'<td class="num">{e(c)}</td>' for c in row[1:])
            + "</tr>"
        )
    parts.append("</table>")
    png = _plot(result)
    if png:
        parts.append(f'<img id="plot-delta" alt="ΔDS per job" src="data:image/png;base64,{png}">')
    flips = result["flips"]
    parts.append('<h2>Flips</h2><ul id="flips">')
    parts.append(
        f'<li id="to-failure">success → failure ({len(flips["to_failure"])}): {e(", ".join(flips["to_failure"]) or "-")}</li>'
    )
    parts.append(
        f'<li id="to-success">failure → success ({len(flips["to_success"])}): {e(", ".join(flips["to_success"]) or "-")}</li></ul>'
    )
    if result.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in result["notes"]) + "</ul>")
    for key, label in _TRIAGE:
        if result.get("triage", {}).get(key):
            parts.append(f'<h2>Regressions by {e(label)}</h2><table id="triage-{key}"><tr><th>{e(label)}</th>')
            parts.append("<th>jobs</th><th>DS lost</th></tr>")
            for g in result["triage"][key]:
                parts.append(
                    f'<tr><td>{e(str(g["group"]))}</td><td class="num">{g["jobs"]}</td>'
                    f'<td class="num">{g["ds_lost"]:.2f}</td></tr>'
                )
            parts.append("</table>")
    parts.append('<h2>Per job (biggest regressions first)</h2><table id="jobs"><tr><th>job</th><th>DS A</th>')
    parts.append("<th>DS B</th><th>ΔDS</th><th>success A → B</th><th>first infraction A / B</th><th>videos</th></tr>")
    for r in result["per_route"]:
        cls = "regression" if r["delta_ds"] < 0 else ("improvement" if r["delta_ds"] > 0 else "")
        links = []
        for side in ("a", "b"):
            if r.get(f"video_{side}"):
                links.append(f'<a class="video video-{side}" href="{e(r[f"video_{side}"])}">{side.upper()}</a>')
        ok = f"{'yes' if r['success_a'] else 'no'} → {'yes' if r['success_b'] else 'no'}"
        first = f"{r.get('first_infraction_a') or '-'} / {r.get('first_infraction_b') or '-'}"
        parts.append(
            f'<tr class="{cls}"><td>{e(_job_label(r))}</td><td class="num">{r["ds_a"]:.2f}</td>'
            f'<td class="num">{r["ds_b"]:.2f}</td><td class="num">{r["delta_ds"]:+.2f}</td><td>{e(ok)}</td>'
            f"<td>{e(first)}</td><td>{' '.join(links) or '-'}</td></tr>"
        )
    parts.append("</table>")
    parts.append(_media_html(result, folder))
    parts.append('<h2>Infractions per km</h2><table id="infractions"><tr><th>infraction</th><th>A</th><th>B</th></tr>')
    for k, v in result["infractions_per_km"].items():
        parts.append(f'<tr><td>{e(k)}</td><td class="num">{v["a"]}</td><td class="num">{v["b"]}</td></tr>')
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"
