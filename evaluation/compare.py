"""``automot eval compare A B``: a paired comparison of two evaluation folders over the same routes.

Both folders are read from their ``merged.json`` (written by `automot eval` / `automot eval report`). A job is one
row of the per-route table: route folder ``<route>`` or ``<route>_seed<k>`` (and its repetition); the jobs of A and
B are paired by that key. Every difference is **B minus A**.

* ``delta.DS`` / ``delta.SR`` / ``delta.RC`` (and ``delta.abilities.<name>`` when the route XML is known): the mean
  over paired jobs, a 95 % paired-bootstrap interval that resamples routes with all their seeds
  (`automot.evaluation.stats.bootstrap_ci` on the per-job differences), and a two-sided paired sign-flip
  permutation p-value over routes (`stats.sign_flip_p`: exact enumeration up to 16 routes, else Monte Carlo).
* ``verdict``: "no detectable difference" whenever the DS interval contains 0 -- a mean change alone is not a
  finding (CARLA scores the same checkpoint differently from run to run).
* ``flips``: jobs that went from success to failure (``to_failure``) and back (``to_success``).

Folders over different route sets (job keys or route-XML contents) are refused unless ``intersect=True``, which
pairs the common jobs and names how many were left out.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automot.errors import UsageError
from automot.evaluation import merge as merge_mod
from automot.evaluation import metrics as M
from automot.evaluation import stats

COMPARE_JSON = "compare.json"
COMPARE_MD = "compare.md"
COMPARE_HTML = "compare.html"

job_key = stats.job_key

__all__ = ["compare_folders", "job_key", "load_side", "write_compare"]


def _xml_digest(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_side(folder: str | os.PathLike, label: str) -> dict[str, Any]:
    """A folder's merged.json summary and rows keyed by :func:`job_key` (UsageError when it has no merge)."""
    out = Path(folder)
    if not out.is_dir():
        raise UsageError(f"eval compare: {label} {out}: not a folder")
    if not (out / merge_mod.MERGED_NAME).is_file():
        raise UsageError(f"eval compare: {label} {out}: no merged.json (run `automot eval report {out}` first)")
    try:
        merged = merge_mod.load_merged(out)
    except Exception as exc:  # noqa: BLE001 - not ours / unreadable: one line
        raise UsageError(f"eval compare: {label} {out}: {exc}") from None
    summary = merged["summary"]
    rows = {}
    for row in summary.get("routes") or []:
        rows[job_key(row)[2]] = row
    return {"dir": out, "merged": merged, "summary": summary, "rows": rows, "xml": merged.get("routes_xml")}


def _check_same_routes(a: Mapping[str, Any], b: Mapping[str, Any], intersect: bool) -> list[str]:
    only_a = sorted(set(a["rows"]) - set(b["rows"]))
    only_b = sorted(set(b["rows"]) - set(a["rows"]))
    da, db = _xml_digest(a["xml"]), _xml_digest(b["xml"])
    xml_differs = da is not None and db is not None and da != db
    if intersect:
        return [k.split("/")[0] for k in only_a + only_b]
    if only_a or only_b or xml_differs:
        what = []
        if xml_differs:
            what.append(f"route files differ ({a['xml']} vs {b['xml']})")
        if only_a or only_b:
            names = [k.split("/")[0] for k in (only_a + only_b)[:3]]
            what.append(f"{len(only_a)} job(s) only in A, {len(only_b)} only in B (e.g. {', '.join(names)})")
        raise UsageError(
            f"eval compare: A and B are evaluations of different routes: {'; '.join(what)}; "
            "pass --intersect to compare the jobs they share"
        )
    return []


def _delta(pairs: Sequence[tuple[str, float, float]], resamples: int) -> dict[str, Any]:
    """{mean, ci95, p_value, a, b} of the per-job differences b - a grouped by route."""
    groups: dict[str, list[float]] = {}
    for route, va, vb in pairs:
        groups.setdefault(route, []).append(vb - va)
    g = list(groups.values())
    ci = stats.bootstrap_ci(g, resamples=resamples)
    mean = stats.mean_of(g)
    n = len(pairs)
    return {
        "mean": mean,
        "ci95": list(ci) if ci else None,
        "p_value": stats.sign_flip_p(g, resamples=resamples),
        "a": sum(p[1] for p in pairs) / n if n else None,
        "b": sum(p[2] for p in pairs) / n if n else None,
        "jobs": n,
        "routes": len(g),
    }


def _abilities_of_rows(xml: str | None) -> dict[str, list[str]] | None:
    if not xml or not Path(xml).is_file():
        return None
    return {r.id: M.abilities_of(r.scenario_type) for r in M.parse_routes_xml(xml)}


def _regression_triage(per_route: Sequence[Mapping[str, Any]], xml: str | None, rows_b: Mapping) -> dict[str, Any]:
    """The jobs B lost DS on, grouped by B's first infraction and by the route's scenario type: jobs and DS lost
    (sum of -ΔDS / paired jobs: the points of the mean ΔDS each group accounts for)."""
    types = {r.id: r.scenario_type for r in M.parse_routes_xml(xml)} if xml and Path(xml).is_file() else {}
    n = max(1, len(per_route))
    groups: dict[str, dict[str, list[float]]] = {"by_first_infraction_b": {}, "by_scenario": {}}
    for r in per_route:
        if r["delta_ds"] >= 0:
            continue
        scenario = types.get(M.xml_route_id({"route_id": r.get("record")})) or r["route_id"]
        first = r.get("first_infraction_b") or "no infraction"
        groups["by_first_infraction_b"].setdefault(first, []).append(-r["delta_ds"])
        groups["by_scenario"].setdefault(str(scenario), []).append(-r["delta_ds"])
    return {
        key: sorted(
            ({"group": g, "jobs": len(v), "ds_lost": sum(v) / n} for g, v in found.items()),
            key=lambda x: (-x["ds_lost"], x["group"]),
        )
        for key, found in groups.items()
    }


def _verdict(d: Mapping[str, Any]) -> str:
    ci = d.get("ci95")
    if not ci or d.get("mean") is None:
        return "no detectable difference (no paired routes)"
    lo, hi = ci
    text = f"ΔDS {d['mean']:+.2f} (95 % CI [{lo:+.2f}, {hi:+.2f}], p = {d['p_value']:.3g})"
    if lo <= 0.0 <= hi:
        return f"no detectable difference: {text}; the interval contains 0"
    return f"B {'better' if lo > 0 else 'worse'} than A: {text}"


def _rel(target: str | None, side_dir: Path, out: Path | None) -> str | None:
    """A video path of one side (relative to its folder) as seen from the comparison's folder."""
    if not target:
        return None
    path = (side_dir / target).resolve()
    if out is None:
        return str(path)
    return Path(os.path.relpath(path, out.resolve())).as_posix()


def compare_folders(
    a_dir: str | os.PathLike,
    b_dir: str | os.PathLike,
    *,
    intersect: bool = False,
    out: str | os.PathLike | None = None,
    resamples: int = stats.RESAMPLES,
) -> dict[str, Any]:
    """The comparison as the ``compare.json`` dict (nothing written; see :func:`write_compare`)."""
    a, b = load_side(a_dir, "A"), load_side(b_dir, "B")
    left_out = _check_same_routes(a, b, intersect)
    keys = [k for k in a["rows"] if k in b["rows"]]
    if not keys:
        raise UsageError("eval compare: A and B share no route")
    out_path = Path(out) if out is not None else None
    per_route, ds, sr, rc = [], [], [], []
    flips: dict[str, list[str]] = {"to_failure": [], "to_success": []}
    ability_pairs: dict[str, list[tuple[str, float, float]]] = {}
    abilities = _abilities_of_rows(a["xml"]) or _abilities_of_rows(b["xml"])
    for key in keys:
        ra, rb = a["rows"][key], b["rows"][key]
        route, seed, _ = job_key(ra)
        ds_a, ds_b = float(ra.get("ds") or 0.0), float(rb.get("ds") or 0.0)
        sa, sb = bool(ra.get("success")), bool(rb.get("success"))
        ds.append((route, ds_a, ds_b))
        sr.append((route, 100.0 * sa, 100.0 * sb))
        rc.append((route, float(ra.get("rc") or 0.0), float(rb.get("rc") or 0.0)))
        job = str(ra.get("folder"))
        if sa and not sb:
            flips["to_failure"].append(job)
        elif sb and not sa:
            flips["to_success"].append(job)
        for name in (abilities or {}).get(M.xml_route_id(ra), []):
            ability_pairs.setdefault(name, []).append((route, 100.0 * sa, 100.0 * sb))
        per_route.append(
            {
                "route_id": route,
                "seed": seed,
                "job": job,
                "record": ra.get("route_id"),
                "ds_a": ds_a,
                "ds_b": ds_b,
                "delta_ds": ds_b - ds_a,
                "rc_a": float(ra.get("rc") or 0.0),
                "rc_b": float(rb.get("rc") or 0.0),
                "success_a": sa,
                "success_b": sb,
                "first_infraction_a": ra.get("first_infraction"),
                "first_infraction_b": rb.get("first_infraction"),
                "first_infraction_time_b": rb.get("first_infraction_time"),
                "video_a": _rel(ra.get("video"), a["dir"], out_path),
                "video_b": _rel(rb.get("video"), b["dir"], out_path),
            }
        )
    per_route.sort(key=lambda r: (r["delta_ds"], r["route_id"], -1 if r["seed"] is None else r["seed"]))
    triage = _regression_triage(per_route, a["xml"] or b["xml"], b["rows"])
    delta = {"DS": _delta(ds, resamples), "SR": _delta(sr, resamples), "RC": _delta(rc, resamples)}
    delta["abilities"] = {name: _delta(p, resamples) for name, p in ability_pairs.items()}
    from automot.evaluation.report import counts_per_km  # one unit, counts per km, as in the report

    per_km_a, per_km_b = counts_per_km(a["summary"]), counts_per_km(b["summary"])
    method = stats.method(resamples)
    method["test"] = (
        f"two-sided paired sign-flip permutation over routes (exact up to {stats.EXACT_MAX_ROUTES} routes, "
        f"else {resamples} random sign patterns)"
    )
    method["direction"] = "B minus A"
    method["units"] = "DS and RC in points (0-100), SR and abilities in percentage points"
    notes = []
    if left_out:
        notes.append(f"--intersect: {len(left_out)} job(s) present in only one folder were left out")
    if abilities is None:
        notes.append("per-ability differences need the route XML (scenario types): not computed")
    return {
        "a": str(Path(a_dir).resolve()),
        "b": str(Path(b_dir).resolve()),
        "routes": len(keys),
        "route_groups": delta["DS"]["routes"],
        "delta": delta,
        "flips": flips,
        "per_route": per_route,
        "infractions_per_km": {k: {"a": per_km_a.get(k, 0), "b": per_km_b.get(k, 0)} for k in M.INFRACTION_KEYS},
        "method": method,
        "verdict": _verdict(delta["DS"]),
        "triage": triage,
        "left_out": left_out,
        "notes": notes,
    }


MEDIA_DIR = "compare_files"  # stills and clips of B's first infraction on regressed jobs


def _with_media(row: Mapping[str, Any], b_dir: Path, folder: Path) -> dict[str, Any]:
    """A regressed job with B's first infraction in time: its still and +-3 s clip cut from B's video into
    ``folder/triage/`` (``still_b`` / ``clip_b`` relative to ``folder``), as ``eval report``'s triage does."""
    from automot.evaluation.triage import cut_media

    row = dict(row)
    t, video = row.get("first_infraction_time_b"), row.get("video_b")
    if row["delta_ds"] >= 0 or t is None or not video:
        return row
    path = Path(video) if Path(video).is_absolute() else folder / video  # video_b is relative to the compare folder
    media = cut_media(path.resolve(), float(t), folder / MEDIA_DIR / f"{row['job']}_b", folder)
    row["still_b"], row["clip_b"] = media.get("still"), media.get("clip")
    return row


def write_compare(result: Mapping[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """``compare.json``, ``compare.md`` and the self-contained ``compare.html`` in ``out`` (atomically)."""
    from automot.evaluation.compare_page import compare_html, compare_markdown
    from automot.fsio import atomic_write_json, atomic_write_text

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    result = {**result, "per_route": [_with_media(r, Path(result["b"]), folder) for r in result["per_route"]]}
    return {
        "json": atomic_write_json(folder / COMPARE_JSON, dict(result), indent=2),
        "markdown": atomic_write_text(folder / COMPARE_MD, compare_markdown(result)),
        "html": atomic_write_text(folder / COMPARE_HTML, compare_html(result, folder)),
    }


# -- command line --------------------------------------------------------------------------------------------------


def add_arguments(p: Any) -> None:
    """The options of ``automot eval compare A B`` (on an argparse parser)."""
    p.add_argument("a", metavar="A", help="baseline evaluation folder (with merged.json)")
    p.add_argument("b", metavar="B", help="evaluation folder compared with A (differences are B minus A)")
    from automot import clikit  # the shared option vocabulary (README, "One CLI vocabulary")

    clikit.add_out(p, "write DIR/compare.json, DIR/compare.md and DIR/compare.html")
    clikit.add_json(p, "print compare.json on stdout")
    p.add_argument("--intersect", action="store_true", help="compare only the jobs both folders have")
    p.add_argument(
        "--resamples",
        type=clikit.integer(100),
        default=stats.RESAMPLES,
        help=f"bootstrap resamples, >= 100 (default {stats.RESAMPLES})",
    )


def main(args: Any) -> int:
    """``automot eval compare``: exit 0 with the verdict (the verdict is a finding, not a failure)."""
    import json

    if args.resamples < 100:
        raise UsageError(f"--resamples {args.resamples}: must be >= 100")
    result = compare_folders(args.a, args.b, intersect=args.intersect, out=args.out, resamples=args.resamples)
    written = write_compare(result, args.out) if args.out else {}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    d = result["delta"]
    for name in ("DS", "SR", "RC"):
        x = d[name]
        unit = " pts" if name == "SR" else ""
        print(
            f"Δ{name} {x['mean']:+.2f}{unit}  95 % CI [{x['ci95'][0]:+.2f}, {x['ci95'][1]:+.2f}]  p = {x['p_value']:.3g}"
        )
    flips = result["flips"]
    print(f"flips: {len(flips['to_failure'])} success -> failure, {len(flips['to_success'])} failure -> success")
    print(f"verdict: {result['verdict']}")
    for key in ("json", "markdown", "html"):
        if key in written:
            print(f"wrote {written[key]}")
    return 0
