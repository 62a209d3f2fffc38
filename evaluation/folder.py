"""The evaluation folder's own files around a run of ``automot eval``: ``DIR/eval.json`` (what the folder evaluates),
the configuration check before anything runs, and the files written after the routes (per-seed merges, summary).

``DIR/eval.json`` holds the world, the route file, every job id the folder has been asked for (a re-run with more
``--seeds`` / ``--routes`` adds jobs; it never removes any) and the configuration's identity
(automot.evaluation.identity). :func:`open_folder` refuses a run whose world, route file, agent config or
checkpoint differs from the folder's, and sets the hashes every new route record will carry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from automot.errors import UsageError
from automot.evaluation import identity as ident_mod
from automot.evaluation import records
from automot.fsio import atomic_write_json

EVAL_FILE = "eval.json"

__all__ = ["finish_folder", "open_folder", "read_eval_file"]


def read_eval_file(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(out) / EVAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def open_folder(
    out: Path,
    *,
    world: str,
    routes: str,
    job_ids: Sequence[str],
    agent_config: str,
    checkpoint: str | None,
    argv: list[str],
    saved_config: bool,
    now: dict[str, Any] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Check that this run may go into ``out`` and write ``eval.json``; returns (every job id of the folder, old
    ones first, then this run's new ones; the record fields to store in every new route's record.json).

    ``saved_config``: the run's config is already ``DIR/agent_config.yaml`` (``--set``); otherwise a copy of the
    loaded config is saved there for the report's link. ``now``: the run's identity when already computed (from
    the ``--set`` config validated in a temporary folder, before anything is written into ``out``)."""
    before = read_eval_file(out) or {}
    old_ids = [str(j) for j in before.get("job_ids") or []]
    if before and before.get("world") != world:
        raise UsageError(
            f"--out {out}: holds a --world {before.get('world')} evaluation; choose another --out (a folder is one "
            "evaluation)"
        )
    if before and world == "carla" and before.get("routes") and before.get("routes") != routes:
        raise UsageError(
            f"--out {out}: evaluates the route file {before.get('routes')}, not {routes}; choose another --out "
            "(--routes-subset / --seeds may extend it)"
        )
    now = now or ident_mod.identity(agent_config, checkpoint, argv)
    recorded = [r for r in (records.read_record(out, j) for j in old_ids or job_ids) if r]
    ident_mod.check_same_identity(out, before.get("identity"), now, recorded)
    all_ids = old_ids + [j for j in job_ids if j not in set(old_ids)]
    if not saved_config:
        ident_mod.save_config_copy(out, agent_config)
    argv_history = list(before.get("argv_history") or ([before["argv"]] if before.get("argv") else []))
    atomic_write_json(
        Path(out) / EVAL_FILE,
        {
            "world": world,
            "routes": routes,
            "job_ids": all_ids,
            "argv": argv,  # this run's command; argv_history: every command that added to the folder
            "argv_history": argv_history + [argv],
            "identity": before.get("identity") or now,
        },
    )
    return all_ids, ident_mod.record_hashes(now)


def finish_folder(out: Path, job_ids: Sequence[str], routes_xml: str | None, repetitions: int | None) -> dict | None:
    """After the merge and the report: each seed's official files and the final ``DIR/summary.json``; returns the
    summary of ``merged.json`` (None without one)."""
    from automot.evaluation import live
    from automot.evaluation.merge import load_merged

    try:
        summary = load_merged(out)["summary"]
    except Exception:  # noqa: BLE001 - no merge (an older version's report module): nothing to add
        return None
    live.write_seed_merges(out, job_ids, routes_xml=routes_xml, repetitions=repetitions or 1)
    done = sum(not r.get("missing") for r in summary.get("routes") or [])
    failed = sum(1 for j in job_ids if (records.read_record(out, j) or {}).get("status") == "failed")
    state = {"state": "finished", "done": done, "running": 0, "failed": failed, "total": len(job_ids), "eta_s": 0}
    live.write_summary_json(out, summary, state)
    return summary
