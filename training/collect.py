"""``automot collect --world embedded``: drive the privileged expert over embedded routes and write a dataset.

Every episode is one ``world.runner.run_route`` call with ``training/collect_agent.py`` as the agent, so the
expert is scored like any agent (``collect_summary.json`` lists DS / RC / infractions per episode) and the
frames are what the agent's rig sees. Episode e of a route uses seed ``route seed + seed + e`` (different
traffic each time). Frames are stored every ``frame_every`` ticks (default 5: the agent's 15/10/5-tick history
lands on stored frames), samples every ``sample_every`` ticks (default 10 = 2 Hz, like SimLingo's lists).
Frame numbers are world ticks, so ``meta.frame_rate_hz`` is the tick rate (20 Hz).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from automot.config import save_yaml
from automot.errors import Interrupted, RunFailed, UsageError
from automot.fsio import TMP_SUFFIX, atomic_write_text, remove_temp_dirs
from automot.training.data.automot_format import META, DatasetWriter, read_samples
from automot.training.data.schema import CameraInfo, DatasetMeta

COLLECT_CONFIG = "collect_config.yaml"  # the options of the (last) collect run, in the dataset folder
SUMMARY = "collect_summary.json"  # every episode of the dataset (DS, samples, kept) and the totals of the kept ones
AGENT_FILE = str(Path(__file__).resolve().with_name("collect_agent.py"))


@dataclass
class CollectOptions:
    routes: list[str]
    episodes: int = 1
    out: str = "data/embedded"
    rig: str = "automot-front"
    image_size: tuple[int, int] | None = None  # (width, height) of every rig camera; None: the rig's own
    seed: int = 0
    frame_every: int = 5
    sample_every: int = 10
    image_format: str = "jpg"
    qa: bool = True
    min_score: float = 0.0  # drop episodes whose expert driving score is below this
    max_ticks: int | None = None  # cap on ticks per episode (None: the route's own tick limit)
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> None:
        from automot.world.routes import list_routes

        known = list_routes()
        unknown = [r for r in self.routes if r not in known]
        if unknown or not self.routes:
            raise UsageError(f"--routes: unknown route(s) {unknown or '(none given)'}; known: {known}")
        if self.episodes < 1:
            raise UsageError(f"--episodes: must be >= 1, got {self.episodes}")
        if self.frame_every < 1 or self.sample_every % self.frame_every:
            raise UsageError(
                f"--sample-every ({self.sample_every}) must be a multiple of --frame-every ({self.frame_every})"
            )


def dataset_meta(opts: CollectOptions, tick_rate_hz: float) -> DatasetMeta:
    from automot.agent.rigs import get_rig

    rig = get_rig(opts.rig, opts.image_size)
    cams = {
        c.id: CameraInfo(
            c.width,
            c.height,
            c.fov,
            CameraInfo.pinhole(c.width, c.height, c.fov),
            {k: getattr(c, k) for k in ("x", "y", "z", "roll", "pitch", "yaw")},
        )
        for c in rig.cameras()
    }
    source = f"embedded world, privileged expert (world/expert.py), frames every {opts.frame_every} ticks"
    return DatasetMeta(rig.name, cams, tick_rate_hz, opts.image_format, source=source)


def collect(opts: CollectOptions) -> dict:
    """Drive every (route, episode) and write the dataset; returns the summary (also ``collect_summary.json``)."""
    from automot.world.routes import load_route

    opts.validate()
    specs = {name: load_route(name) for name in opts.routes}
    rates = {round(1.0 / s.dt, 6) for s in specs.values()}
    if len(rates) != 1:
        raise UsageError(f"--routes: routes with different tick rates {sorted(rates)} cannot share one dataset")
    final = Path(opts.out)
    if final.exists() and not final.is_dir():
        raise UsageError(f"--out {final}: is a file, not a folder")
    # --overwrite of a dataset stages like convert / export: the new dataset is written into a hidden sibling
    # folder and swapped in only when complete, so a kill or a failure leaves the earlier dataset as it was.
    _clean_after_kill(final)
    replacing = opts.overwrite and (final / META).is_file()
    if opts.overwrite and not replacing and final.is_dir() and any(final.iterdir()):
        # Only a dataset is replaced: a folder without meta.json may be anything (a home directory, a run).
        raise UsageError(f"--out {final}: not a dataset root (no {META}); --overwrite replaces only datasets")
    out = final
    jobs = [(name, e) for name in opts.routes for e in range(opts.episodes)]
    if not opts.overwrite:
        # An episode folder of an earlier run would make this run's episode fail, and a failed episode's folder is
        # deleted: refuse up front instead of touching it.
        clash = [f for f in (out / _episode_name(n, specs[n].seed + opts.seed + e) for n, e in jobs) if f.exists()]
        if clash:
            raise UsageError(
                f"--out {out}: already holds episode(s) {', '.join(f.name for f in clash)}; use another --seed "
                "to add episodes, or --overwrite to start a new dataset"
            )
    meta = dataset_meta(opts, rates.pop())
    if replacing:
        out = Path(tempfile.mkdtemp(prefix=f".{final.name}.staged.", suffix=TMP_SUFFIX, dir=final.parent))
    try:
        summary, rows = _collect_into(opts, out, meta, jobs, specs)
    except BaseException:
        if replacing:
            shutil.rmtree(out, ignore_errors=True)  # the earlier dataset at --out is untouched
        raise
    crashed = [r for r in rows if "error" in r]
    if rows and len(crashed) == len(rows):
        if replacing:
            shutil.rmtree(out, ignore_errors=True)
        kept = f"; {final} keeps the earlier dataset" if replacing else ""
        raise RunFailed(
            f"every episode crashed ({len(rows)}); first: {crashed[0]['episode']}: {crashed[0]['error']} "
            + (f"(details in {out / SUMMARY})" if not replacing else "")
            + kept
        )
    if replacing:
        _swap_in(out, final)
    return summary


def _clean_after_kill(final: Path) -> None:
    """What a killed ``collect --overwrite`` on ``final`` left next to it: its staging folder goes; a dataset
    caught between the two renames of :func:`_swap_in` (``final`` missing) is put back first."""
    for old in sorted(final.parent.glob(f".{final.name}.old.*{TMP_SUFFIX}")):
        if not final.exists() and (old / final.name).is_dir():
            os.rename(old / final.name, final)
    for stale in (".staged.", ".old."):
        remove_temp_dirs(final.parent, prefix=f".{final.name}{stale}")


def _swap_in(new: Path, final: Path) -> None:
    """Replace the folder ``final`` by ``new`` (a sibling): two renames, then the old one is deleted."""
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", suffix=TMP_SUFFIX, dir=final.parent))
    os.rename(final, old / final.name)
    os.rename(new, final)
    shutil.rmtree(old, ignore_errors=True)


def _totals(summary: dict) -> dict:
    kept = [r for r in summary["episodes"] if r["kept"]]
    summary["total_samples"] = sum(r["samples"] for r in kept)
    summary["mean_driving_score"] = sum(r["driving_score"] for r in summary["episodes"]) / max(
        len(summary["episodes"]), 1
    )
    return summary


def _collect_into(opts: CollectOptions, out: Path, meta: DatasetMeta, jobs: list, specs: dict) -> tuple[dict, list]:
    """Drive the jobs into the dataset folder ``out``; returns the summary of every episode in it and this run's
    rows. collect_summary.json is rewritten after every episode with its totals, so an interrupted run
    leaves a summary that matches the episodes kept."""
    from tqdm import tqdm

    from automot.world.runner import AgentCrashed, run_route

    writer = DatasetWriter(out, meta, overwrite=False)
    save_yaml(opts, out / COLLECT_CONFIG)
    summary_path = out / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"episodes": []}
    first_row = len(summary["episodes"])
    bar = tqdm(jobs, desc="collect", unit="episode", disable=not opts.progress, file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="automot_collect_") as tmp:
        for name, e in bar:
            spec = specs[name]
            seed = spec.seed + opts.seed + e
            episode = _episode_name(name, seed)
            conf = Path(tmp) / f"{episode}.json"
            conf.write_text(
                json.dumps(
                    {
                        "dataset": str(writer.root),
                        "episode": episode,
                        "rig": opts.rig,
                        "image_size": list(opts.image_size) if opts.image_size else None,
                        "frame_every": opts.frame_every,
                        "sample_every": opts.sample_every,
                        "qa": opts.qa,
                    }
                )
            )
            try:
                results = run_route(
                    spec,
                    AGENT_FILE,
                    str(conf),
                    Path(tmp) / episode,
                    ticks=opts.max_ticks,
                    seed=seed,
                    progress=opts.progress,
                )
                error = None
            except AgentCrashed as exc:
                results, error = exc.results, str(exc)
            except (KeyboardInterrupt, Interrupted):
                # the episode being written is incomplete: it goes, and the summary lists what the dataset holds
                shutil.rmtree(out / episode, ignore_errors=True)
                atomic_write_text(summary_path, json.dumps(_totals(summary), indent=2))
                raise Interrupted(
                    f"interrupted during episode {episode} (its partial folder was removed); {out} holds the "
                    f"{sum(r['kept'] for r in summary['episodes'])} kept episode(s) {summary_path.name} lists"
                ) from None
            record = results["_checkpoint"]["records"][0]
            folder = out / episode
            n = len(read_samples(folder / "samples.jsonl")) if (folder / "samples.jsonl").is_file() else 0
            row = {
                "episode": episode,
                "route": name,
                "seed": seed,
                "status": record["status"],
                "driving_score": record["scores"]["score_composed"],
                "route_completion": record["scores"]["score_route"],
                "infractions": {k: len(v) for k, v in record["infractions"].items() if v},
                "samples": n,
                "kept": error is None and record["scores"]["score_composed"] >= opts.min_score and n > 0,
            }
            if error:
                row["error"] = error
            if not row["kept"]:
                shutil.rmtree(folder, ignore_errors=True)
            summary["episodes"].append(row)
            atomic_write_text(summary_path, json.dumps(_totals(summary), indent=2))
            bar.set_postfix(ds=f"{row['driving_score']:.0f}", samples=n)
    atomic_write_text(summary_path, json.dumps(_totals(summary), indent=2))
    return summary, summary["episodes"][first_row:]


def _episode_name(route: str, seed: int) -> str:
    return f"{route}_seed{seed:04d}"
