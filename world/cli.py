"""``automot drive``: run the agent closed-loop in the embedded highway-env world or in CARLA.

Embedded: ``automot drive --route merge --out runs/merge [--agent expert] [--ticks N] [--seed S]`` writes
``DIR/results.json`` and, through ``AUTOMOT_RECORD_DIR=DIR``, asks the agent's recorder to write its video and tick
log there. CARLA: ``automot drive --world carla --routes ROUTES.xml --agent-config CFG.yaml`` runs the installed
leaderboard evaluator in a subprocess.

Errors are raised and reported by automot.cli with the shared exit codes (`automot --help`): 0 finished (whatever
the score); 2 bad option, route or agent config; 3 CARLA / leaderboard missing; 5 the agent crashed (results.json
is still written) or the leaderboard evaluator failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from automot import clikit

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
    carla = p.add_argument_group("carla world")
    carla.add_argument("--routes", metavar="XML", help="leaderboard route file")
    carla.add_argument("--host", default="localhost")
    carla.add_argument("--port", type=int, default=2000)
    carla.add_argument("--tm-port", type=int, default=8000, help="traffic manager port")


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
    """Which of the CARLA client and the leaderboard / scenario runner packages cannot be imported."""
    return [m for m in ("carla", "leaderboard", "srunner") if importlib.util.find_spec(m) is None]


def evaluator_command(args: argparse.Namespace, out: Path) -> list[str]:
    """The ``leaderboard_evaluator`` command line for ``--world carla``."""
    return [
        sys.executable,
        "-m",
        "leaderboard.leaderboard_evaluator",
        "--routes",
        str(args.routes),
        "--agent",
        _resolve(args.agent),
        "--agent-config",
        _resolve(args.agent_config),
        "--track",
        "SENSORS",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--traffic-manager-port",
        str(args.tm_port),
        "--checkpoint",
        str(out / "results.json"),
        "--debug-checkpoint",
        str(out / "live_results.txt"),
    ]


def _drive_carla(args: argparse.Namespace) -> int:
    clikit.require(args.routes, "--routes ROUTES.xml is required for --world carla")
    clikit.require(args.agent != "expert", "--agent expert: the privileged expert only exists in the embedded world")
    missing = missing_carla_modules()
    if missing:
        raise clikit.EnvironmentProblem(
            f"cannot import {', '.join(missing)}. Install the CARLA client with `pip install -e .[carla]` (or the "
            "0.9.15 wheel matching your server, see README), and put the leaderboard and scenario runner on "
            "PYTHONPATH, e.g. export PYTHONPATH=$LEADERBOARD_ROOT:$SCENARIO_RUNNER_ROOT:$PYTHONPATH "
            "(Bench2Drive: Bench2Drive/leaderboard and Bench2Drive/scenario_runner)."
        )
    out = Path(args.out or "runs/drive/carla")
    out.mkdir(parents=True, exist_ok=True)
    cmd = evaluator_command(args, out)
    print("running:", " ".join(cmd), flush=True)
    code = subprocess.call(cmd)
    if code != 0:
        raise clikit.RunFailed(f"the leaderboard evaluator exited with code {code} (results in {out})")
    return 0
