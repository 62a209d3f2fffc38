"""``automot drive``: run the agent closed-loop in the embedded highway-env world or in CARLA.

Embedded: ``automot drive --route merge --out runs/merge [--agent expert] [--ticks N] [--seed S]`` writes
``DIR/results.json`` and, through ``AUTOMOT_RECORD_DIR=DIR``, asks the agent's recorder to write its video and tick
log there. CARLA: ``automot drive --world carla --routes ROUTES.xml --agent-config CFG.yaml`` runs the real
leaderboard evaluator in a subprocess; flavour detection, up-front checks and the command line live in
``world/evaluator.py``.

Errors are raised and reported by automot.cli with the shared exit codes (`automot --help`): 0 finished (whatever
the score); 2 bad option, route or agent config; 3 CARLA / leaderboard missing; 5 the agent crashed (results.json
is still written) or the leaderboard evaluator failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
from pathlib import Path

from automot import clikit
from automot.world import evaluator
from automot.world.evaluator import EvaluatorRun

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AGENT = "agent/automot_agent.py"
DEFAULT_CONFIG = "leaderboard_configs/demo_tiny.yaml"  # the committed CPU-trained demo model


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``drive`` subcommand."""
    p = clikit.add_command(
        subparsers,
        "drive",
        help="closed-loop driving in the embedded highway-env world or in CARLA",
        func=_cmd_drive,
        description="Run a leaderboard agent on a route and score it like the CARLA leaderboard (results.json).",
    )
    p.add_argument("--world", choices=("embedded", "carla"), default="embedded", help="simulator (default: embedded)")
    p.add_argument("--route", help="embedded route name (see --list-routes)")
    p.add_argument("--list-routes", action="store_true", help="list the embedded routes and exit")
    clikit.add_out(p, "output folder (default: runs/drive/<route>)")
    p.add_argument(
        "--config",
        "--agent-config",
        dest="agent_config",
        default=DEFAULT_CONFIG,
        metavar="AGENT.yaml",
        help=f"agent config passed to setup() (default: {DEFAULT_CONFIG})",
    )
    p.add_argument("--agent", default=DEFAULT_AGENT, help=f"agent file, or 'expert' (default: {DEFAULT_AGENT})")
    p.add_argument("--ticks", type=int, help="tick limit (embedded; default: the route's)")
    p.add_argument("--seed", type=int, help="traffic / sensor-noise seed (embedded; default: the route's)")
    clikit.add_no_progress(p)
    carla = p.add_argument_group(
        "carla world",
        "the real leaderboard evaluator (leaderboard 2.0 or the Bench2Drive fork, detected) from LEADERBOARD_ROOT / "
        "SCENARIO_RUNNER_ROOT or PYTHONPATH; see leaderboard_configs/BENCH2DRIVE.md",
    )
    carla.add_argument("--routes", metavar="XML", help="leaderboard route file")
    carla.add_argument("--routes-subset", metavar="IDS", help="route ids to run, e.g. 1711,1773 or 1711-1790")
    carla.add_argument("--repetitions", type=int, help="repetitions per route (evaluator default 1)")
    carla.add_argument("--resume", action="store_true", help="continue the run recorded in --checkpoint")
    carla.add_argument("--overwrite", action="store_true", help="start over even if --checkpoint holds results")
    carla.add_argument("--checkpoint", metavar="JSON", help="results file (default: OUT/results.json)")
    carla.add_argument("--timeout", type=float, help="CARLA client / agent timeout in seconds")
    carla.add_argument("--record", metavar="DIR", help="CARLA recorder logs into DIR (on the server)")
    carla.add_argument("--debug", type=int, help="evaluator debug level")
    carla.add_argument("--host", default="localhost")
    carla.add_argument("--port", type=int, default=2000)
    carla.add_argument(
        "--tm-port", "--traffic-manager-port", dest="tm_port", type=int, default=8000, help="traffic manager port"
    )
    carla.add_argument("--tm-seed", "--traffic-manager-seed", dest="tm_seed", type=int, help="traffic manager seed")
    carla.add_argument("--gpu-rank", type=int, help="Bench2Drive only: GPU its CarlaUE4.sh runs on (default 0)")
    carla.add_argument("--leaderboard-root", help="folder holding the leaderboard package (default: LEADERBOARD_ROOT)")
    carla.add_argument("--scenario-runner-root", help="folder holding srunner (default: SCENARIO_RUNNER_ROOT)")


def _resolve(path: str) -> str:
    """A path as given if it exists, else relative to the repository (so defaults work from any folder)."""
    return path if Path(path).exists() or not (REPO_ROOT / path).exists() else str(REPO_ROOT / path)


def _cmd_drive(args: argparse.Namespace) -> int:
    if args.list_routes:
        from automot.world.routes import list_routes, load_route

        for name in list_routes():
            print(f"{name:20s} {load_route(name).description}")
        return 0
    if args.world == "carla":
        return _drive_carla(args)
    return _drive_embedded(args)


def _drive_embedded(args: argparse.Namespace) -> int:
    from automot.world.routes import load_route
    from automot.world.runner import EXPERT_AGENT, AgentCrashed, run_route

    clikit.require(args.route, "--route is required for --world embedded (see --list-routes)")
    route = load_route(args.route)  # UnknownRouteError exits 2 through automot.cli, before anything is written
    agent = EXPERT_AGENT if args.agent == "expert" else _resolve(args.agent)
    config = "" if args.agent == "expert" else _resolve(args.agent_config)
    clikit.require(Path(agent).is_file(), f"--agent {agent}: file not found")
    out = Path(args.out or f"runs/drive/{args.route}")
    out.mkdir(parents=True, exist_ok=True)
    # Contract with the agent: AUTOMOT_RECORD_DIR overrides its recorder.out_dir (video.mp4, ticks.jsonl).
    os.environ["AUTOMOT_RECORD_DIR"] = str(out.resolve())
    try:
        results = run_route(route, agent, config, out, ticks=args.ticks, seed=args.seed, progress=not args.no_progress)
    except AgentCrashed as exc:  # RunFailed (5), unless the cause has its own code: a bad agent config exits 2
        cause = exc.__cause__
        if isinstance(cause, clikit.AutoMoTError) and cause.exit_code not in (
            clikit.ExitCode.INTERNAL,
            clikit.ExitCode.RUN_FAILED,
        ):
            raise clikit.error_for(cause.exit_code, str(exc)) from exc
        raise
    record = results["_checkpoint"]["records"][0]
    print(f"route {args.route}: {record['status']}")
    print(
        f"  driving score {results['score_composed']:.2f}  route completion {results['score_route']:.2f}  "
        f"penalty {results['score_penalty']:.3f}  ({record['meta']['duration_game']:.1f} s simulated, "
        f"{record['meta']['duration_system']:.1f} s wall)"
    )
    for key, items in record["infractions"].items():
        for item in items:
            print(f"  {key}: {item}")
    print(f"  results: {out / 'results.json'}")
    return 0


def missing_carla_modules() -> list[str]:
    """Which of the CARLA client and the leaderboard / scenario runner packages cannot be found (the last two
    also count as found through LEADERBOARD_ROOT / SCENARIO_RUNNER_ROOT)."""
    missing = [] if importlib.util.find_spec("carla") is not None else ["carla"]
    for package, env in (("leaderboard", "LEADERBOARD_ROOT"), ("srunner", "SCENARIO_RUNNER_ROOT")):
        if not os.environ.get(env) and importlib.util.find_spec(package) is None:
            missing.append(package)
    return missing


def evaluator_run(args: argparse.Namespace, out: Path) -> EvaluatorRun:
    """The evaluator options of ``automot drive --world carla`` (paths absolute: the fork runs in another folder)."""
    checkpoint = Path(args.checkpoint) if getattr(args, "checkpoint", None) else out / "results.json"
    return EvaluatorRun(
        routes=str(Path(args.routes).resolve()) if Path(args.routes).exists() else str(args.routes),
        agent=str(Path(_resolve(args.agent)).resolve()),
        agent_config=str(Path(_resolve(args.agent_config)).resolve()),
        checkpoint=str(checkpoint.resolve()),
        debug_checkpoint=str((out / "live_results.txt").resolve()),
        host=args.host,
        port=args.port,
        tm_port=args.tm_port,
        tm_seed=getattr(args, "tm_seed", None),
        routes_subset=getattr(args, "routes_subset", None),
        repetitions=getattr(args, "repetitions", None),
        resume=bool(getattr(args, "resume", False)),
        timeout=getattr(args, "timeout", None),
        record=str(Path(args.record).resolve()) if getattr(args, "record", None) else None,
        debug=getattr(args, "debug", None),
        gpu_rank=getattr(args, "gpu_rank", None),
    )


def _drive_carla(args: argparse.Namespace) -> int:
    clikit.require(args.routes, "--routes ROUTES.xml is required for --world carla")
    clikit.require(args.agent != "expert", "--agent expert: the privileged expert only exists in the embedded world")
    missing = missing_carla_modules()
    if missing:
        raise clikit.EnvironmentProblem(
            f"cannot import {', '.join(missing)}. Install the CARLA client and the evaluator's requirements with "
            "`pip install -e .[carla]`, and point LEADERBOARD_ROOT / SCENARIO_RUNNER_ROOT at the leaderboard and "
            "scenario runner (or export PYTHONPATH=$LEADERBOARD_ROOT:$SCENARIO_RUNNER_ROOT:$PYTHONPATH; "
            "Bench2Drive: Bench2Drive/leaderboard and Bench2Drive/scenario_runner), see leaderboard_configs/BENCH2DRIVE.md"
        )
    install = evaluator.locate(args.leaderboard_root, args.scenario_runner_root)
    out = Path(args.out or "runs/drive/carla")
    run = evaluator_run(args, out)
    evaluator.check_run(install, run, overwrite=args.overwrite)  # before any simulator is touched
    out.mkdir(parents=True, exist_ok=True)
    cmd = evaluator.build_command(install, run)
    print(f"running ({install.flavour}, in {install.workdir}):", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=install.workdir, env=evaluator.evaluator_env(install))
    if code != 0:
        raise clikit.RunFailed(f"the leaderboard evaluator exited with code {code} (results in {run.checkpoint})")
    return 0
