"""One evaluator attempt at one route (automot.evaluation.engine's CARLA worker runs these in its retry loop): the
leaderboard evaluator's command line and environment, running it under a watchdog in its own process group, and
deciding from what it wrote whether the attempt counts."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from automot.evaluation import records
from automot.evaluation.records import Job
from automot.evaluation.simulator import popen_group, stop_group

if TYPE_CHECKING:  # engine imports this module
    from automot.evaluation.engine import EvalConfig


def evaluator_command(cfg: EvalConfig, job: Job, stage: Path, ports, gpu: str | None) -> tuple[list, dict, str]:
    """(argv, env, cwd) of the leaderboard evaluator for one route of the route file."""
    from automot.world import evaluator as lb

    run = lb.EvaluatorRun(
        routes=str(Path(cfg.routes).resolve()),
        agent=cfg.agent,
        agent_config=cfg.agent_config,
        checkpoint=str(stage / records.RESULTS),
        debug_checkpoint=str(stage / "live_results.json"),
        host=cfg.simulator.host,
        port=ports.rpc,
        tm_port=ports.tm,
        track=cfg.track,
        routes_subset=job.route_id,
        repetitions=cfg.repetitions,
        tm_seed=job.seed,  # --traffic-manager-seed: the only seed both evaluators take (None: their default, 0)
    )
    env = dict(os.environ)
    if cfg.evaluator_command:
        fake = lb.EvaluatorInstall(Path("."), None, cfg.flavour or lb.LEADERBOARD_2)
        argv = list(cfg.evaluator_command) + lb.build_command(fake, run)[2:]
        cwd = os.getcwd()
    else:
        install = lb.locate(cfg.leaderboard_root, cfg.scenario_runner_root)
        if install.flavour == lb.BENCH2DRIVE:
            run.gpu_rank = int(gpu) if gpu not in (None, "") and str(gpu).isdigit() else 0
        argv = lb.build_command(install, run)
        env = lb.evaluator_env(install)
        cwd = str(install.workdir)
    env.update(cfg.env)
    if cfg.simulator.carla_root:
        env["CARLA_ROOT"] = str(cfg.simulator.carla_root)  # the Bench2Drive fork starts $CARLA_ROOT/CarlaUE4.sh
    env["AUTOMOT_RECORD_DIR"] = str(stage)  # the agent's recorder: video.mp4, ticks.jsonl
    env["SAVE_PATH"] = str(stage)  # Bench2Drive agents: per-route folders, metric_info.json
    if gpu not in (None, ""):
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return argv, env, cwd


def run_evaluator(
    argv: list, env: dict, cwd: str, log: Path, timeout: float, on_start: Callable | None = None
) -> tuple[int | None, bool]:
    """Run the evaluator in its own process group; (exit code, hung). A hung one is killed with its group."""
    proc = popen_group(argv, log, env=env, cwd=cwd)
    if on_start is not None:
        on_start(proc.pid)
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        stop_group(proc, grace=2.0)
        return None, True
    finally:
        if proc.poll() is None:
            stop_group(proc, grace=2.0)
        from automot.evaluation.ports import kill_group

        kill_group(proc.pid)  # anything the evaluator started and left in its group
        if on_start is not None:
            on_start(None)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def attempt_outcome(stage: Path, code: int | None, hung: bool, timeout: float, job: Job) -> str | None:
    """None when the attempt produced a usable record of the route, else the reason it failed."""
    if hung:
        return f"evaluator hung: killed by the watchdog after {timeout:g} s"
    results = read_json(stage / records.RESULTS)
    recs = [
        r for r in records.route_records(results or {}) if str(r.get("route_id", "")).split("_")[1:2] == [job.route_id]
    ]
    if code != 0:
        return f"evaluator exited with code {code}"
    if not recs:
        return "evaluator wrote no record of the route"
    crashed = [r for r in recs if r.get("status") == "Failed - Simulation crashed"]
    if crashed:
        return "simulation crashed"
    return None
