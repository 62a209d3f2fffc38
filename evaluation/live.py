"""The live report of ``automot eval`` and the over-seed files.

While an evaluation runs, :class:`LiveReport` (called by the engine after every route recorded) merges what is in
``DIR/routes/`` and rewrites ``DIR/report.md``, ``DIR/report.html`` and ``DIR/summary.json`` -- each atomically, so a
reader never sees half a file -- with a header saying how many routes are done / running / failed, the DS so far
with its 95 % interval (over the routes done) and the ETA; DS / SR / RC so far also go to TensorBoard scalars under
``DIR/tb/`` (``tensorboard --logdir DIR/tb``).

With seeds, :func:`write_seed_merges` writes each seed's ``results.json`` / ``merged.json`` in the official
formats under ``DIR/seeds/seed<k>/`` (the Bench2Drive tools read each seed as they are), and ``DIR/summary.json``
carries the over-seed figures (mean, sample std over seeds, 95 % bootstrap CI over routes, per-seed DS / SR / RC).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automot.evaluation import merge as merge_mod
from automot.evaluation import stats
from automot.fsio import atomic_write_json

SUMMARY_JSON = "summary.json"
SEEDS_DIR = "seeds"
TB_DIR = "tb"

__all__ = ["LiveReport", "over_seeds", "write_seed_merges", "write_summary_json"]


def _jobs(rows: Sequence[Mapping[str, Any]], key: str, scale: float = 1.0) -> list[tuple[str, int | None, float]]:
    out = []
    for row in rows:
        route, seed, _ = stats.job_key(row)
        value = float(bool(row.get("success"))) if key == "success" else float(row.get(key) or 0.0)
        out.append((route, seed, value * scale))
    return out


def over_seeds(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """DS / SR (%) / RC with mean, std over seeds and CI (summary["uncertainty"]) plus the per-seed means."""
    rows = list(summary.get("routes") or []) if rows is None else list(rows)
    per_seed: dict[str, dict[str, float]] = {}
    by_seed: dict[int | None, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_seed.setdefault(stats.job_key(row)[1], []).append(row)
    for seed, items in sorted(by_seed.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
        n = len(items)
        per_seed["none" if seed is None else str(seed)] = {
            "DS": sum(float(r.get("ds") or 0.0) for r in items) / n,
            "SR": 100.0 * sum(bool(r.get("success")) for r in items) / n,
            "RC": sum(float(r.get("rc") or 0.0) for r in items) / n,
            "jobs": n,
        }
    u = summary.get("uncertainty") or stats.summary_uncertainty(rows)
    return {
        **{k: u[k] for k in ("DS", "SR", "RC", "abilities") if k in u},
        "per_seed": per_seed,
        "method": u.get("method"),
    }


def write_summary_json(out: Path, summary: Mapping[str, Any], state: Mapping[str, Any]) -> Path:
    """``DIR/summary.json``: the run's state (running / finished, counts, ETA), the over-seed figures and the
    summary table's headline numbers."""
    data = {
        **state,
        "driving_score": summary.get("driving_score"),
        "success_rate": summary.get("success_rate"),
        "route_completion": summary.get("route_completion"),
        "records": summary.get("records"),
        "route_count": summary.get("route_count"),
        "over_seeds": over_seeds(summary),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return atomic_write_json(Path(out) / SUMMARY_JSON, data, indent=2)


def write_seed_merges(
    out: Path, job_ids: Sequence[str], routes_xml: str | None = None, repetitions: int = 1
) -> dict[int, Path]:
    """``DIR/seeds/seed<k>/results.json`` and ``merged.json`` for every seed of ``<route>_seed<k>`` jobs (nothing
    without seeded jobs); returns seed -> folder."""
    by_seed: dict[int, list[str]] = {}
    for jid in job_ids:
        seed = stats.job_key({"folder": jid})[1]
        if seed is not None:
            by_seed.setdefault(seed, []).append(jid)
    written = {}
    for seed, ids in sorted(by_seed.items()):
        dest = Path(out) / SEEDS_DIR / f"seed{seed}"
        merge_mod.merge_eval(out, ids, routes_xml=routes_xml, repetitions=repetitions, dest=dest)
        written[seed] = dest
    return written


def _fmt_ci(d: Mapping[str, Any] | None) -> str:
    if not d or d.get("mean") is None:
        return "--"
    ci = d.get("ci95")
    return f"{d['mean']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


class LiveReport:
    """The engine's ``on_finish``: rewrite the report, summary.json and the TensorBoard scalars."""

    def __init__(
        self,
        out: str | os.PathLike,
        job_ids: Sequence[str],
        routes_xml: str | None = None,
        repetitions: int = 1,
        tensorboard: bool = True,
    ) -> None:
        self.out, self.job_ids = Path(out), list(job_ids)
        self.routes_xml, self.repetitions = routes_xml, repetitions
        self.tensorboard = tensorboard
        self._writer: Any = None
        self.updates = 0

    def _tb(self) -> Any:
        if self._writer is None and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # TensorBoard is a dependency; without it the report still updates
                self.tensorboard = False
                return None
            self._writer = SummaryWriter(log_dir=str(self.out / TB_DIR))
        return self._writer

    def __call__(self, summary: Mapping[str, Any] | None, prog: Any) -> dict[str, Any]:
        from automot.evaluation.metric_info import write_missing
        from automot.evaluation.report import format_duration, write_report

        write_missing(self.out, self.job_ids)  # embedded routes: metric_info.json from world.jsonl (smoothness)
        merged = merge_mod.merge_eval(self.out, self.job_ids, routes_xml=self.routes_xml, repetitions=self.repetitions)
        done_rows = [r for r in merged.get("routes") or [] if not r.get("missing")]
        so_far = {
            "DS": stats.describe(_jobs(done_rows, "ds")),
            "SR": stats.describe(_jobs(done_rows, "success", 100.0)),
            "RC": stats.describe(_jobs(done_rows, "rc")),
        }
        elapsed = time.monotonic() - prog.started
        left = prog.total - prog.done
        eta = elapsed / prog.finished_this_run * left if prog.finished_this_run else None
        finished = left == 0 and prog.running == 0
        state = {
            "state": "finished" if finished else "running",
            "done": prog.done,
            "running": prog.running,
            "failed": prog.failed,
            "total": prog.total,
            "eta_s": None if eta is None else round(eta, 1),
            "so_far": so_far,
        }
        live = [
            (
                "Status",
                f"{'finished' if finished else 'running'}: {prog.done}/{prog.total} routes done, {prog.running} "
                f"running, {prog.failed} failed; ETA {format_duration(eta) if not finished else '0s'}",
                None,
            ),
            ("DS so far", f"{_fmt_ci(so_far['DS'])} over the {len(done_rows)} routes done (95 % bootstrap CI)", None),
        ]
        if not finished:
            write_report(self.out, live=live, media=False)
        write_summary_json(self.out, merged, state)
        writer = self._tb()
        if writer is not None:
            for key in ("DS", "SR", "RC"):
                if so_far[key]["mean"] is not None:
                    writer.add_scalar(f"eval/{key}_so_far", so_far[key]["mean"], prog.done)
            writer.flush()
        self.updates += 1
        return state

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
