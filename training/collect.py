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
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from automot.config import save_yaml
from automot.errors import RunFailed, UsageError
from automot.fsio import atomic_write_text
from automot.training.data.automot_format import DatasetWriter, read_samples
from automot.training.data.schema import CameraInfo, DatasetMeta

COLLECT_CONFIG = "collect_config.yaml"  # the options of the (last) collect run, in the dataset folder
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
    from tqdm import tqdm

    from automot.world.routes import load_route
    from automot.world.runner import AgentCrashed, run_route

    opts.validate()
    specs = {name: load_route(name) for name in opts.routes}
    rates = {round(1.0 / s.dt, 6) for s in specs.values()}
    if len(rates) != 1:
        raise UsageError(f"--routes: routes with different tick rates {sorted(rates)} cannot share one dataset")
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder")
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
    writer = DatasetWriter(out, dataset_meta(opts, rates.pop()), overwrite=opts.overwrite)
    save_yaml(opts, out / COLLECT_CONFIG)
    summary_path = out / "collect_summary.json"
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
            atomic_write_text(summary_path, json.dumps(summary, indent=2))
            bar.set_postfix(ds=f"{row['driving_score']:.0f}", samples=n)
    kept = [r for r in summary["episodes"] if r["kept"]]
    summary["total_samples"] = sum(r["samples"] for r in kept)
    summary["mean_driving_score"] = sum(r["driving_score"] for r in summary["episodes"]) / max(
        len(summary["episodes"]), 1
    )
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    rows = summary["episodes"][first_row:]
    crashed = [r for r in rows if "error" in r]
    if rows and len(crashed) == len(rows):
        raise RunFailed(
            f"every episode crashed ({len(rows)}); first: {crashed[0]['episode']}: {crashed[0]['error']} "
            f"(details in {summary_path})"
        )
    return summary


def _episode_name(route: str, seed: int) -> str:
    return f"{route}_seed{seed:04d}"
