"""``automot drive``: run the agent closed-loop in the embedded highway-env world or in CARLA.

Embedded: ``automot drive --route merge --out runs/merge [--agent expert] [--ticks N] [--seed S]`` writes
``DIR/results.json`` and, through ``AUTOMOT_RECORD_DIR=DIR``, asks the agent's recorder to write its video and tick
log there. CARLA: ``automot drive --world carla --routes ROUTES.xml --agent-config CFG.yaml`` runs the real
leaderboard evaluator in a subprocess; flavour detection, up-front checks and the command line live in
``world/evaluator.py``.

Errors are raised and reported by automot.cli with the shared exit codes (`automot --help`): 0 finished (whatever
the score); 2 bad option, route or agent config, or an output folder that is a file, not writable, in use by
another automot process (lock file ``OUT/.automot.lock``) or non-empty without ``--overwrite``; 3 CARLA /
leaderboard missing; 5 the agent crashed (results.json is still written) or the leaderboard evaluator failed;
130 SIGINT / SIGTERM.

Embedded output rules (issue #12):

* a fresh ``--out`` is written in place: results.json atomically at the end, ticks.jsonl and video.mp4 as streams
  (a SIGKILL leaves them valid up to the last tick);
* ``--overwrite`` into a folder that holds a run drives into a hidden ``OUT/.staged.XXXX.tmp/`` and, only when the
  route ended (exit 0), moves the new files in (results.json last) and removes the earlier run's drive files the
  new run did not write. A crashed (5) or interrupted (130) ``--overwrite`` run discards its staged files and
  leaves the earlier run as it was;
* SIGINT / SIGTERM: the current tick finishes, results.json records "Failed - interrupted" with the route
  completion reached, the video and tick log are closed (one frame / line per tick driven), exit 130.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from automot import clikit
from automot.world import evaluator
from automot.world.evaluator import EvaluatorRun

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AGENT = "agent/automot_agent.py"
DEFAULT_CONFIG = "leaderboard_configs/demo_tiny.yaml"  # the committed CPU-trained demo model
PORT = clikit.integer(1, 65535)
# What one embedded drive writes into --out (with agent_config.yaml); --overwrite replaces this set as a whole.
DRIVE_OUTPUTS = ("results.json", "ticks.jsonl", "video.mp4", "summary.jsonl", "world.jsonl")
INPUTS_DIR = "inputs"  # --record-inputs (agent/input_recorder.py): replaced as a whole too, recorded or not


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``drive`` subcommand."""
    p = clikit.add_command(
        subparsers,
        "drive",
        help="closed-loop driving in the embedded highway-env world or in CARLA",
        func=_cmd_drive,
        description="Run a leaderboard agent on a route and score it like the CARLA leaderboard (results.json).",
    )
    clikit.add_world(p)
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
    clikit.add_set(
        p,
        "override one field of the --config agent YAML (e.g. --set runtime.mode=pipelined --set "
        "runtime.latency_ticks=3)",
    )
    clikit.add_checkpoint(p, "drive with this model instead of the --config's model.checkpoint (both worlds)")
    p.add_argument("--agent", default=DEFAULT_AGENT, help=f"agent file, or 'expert' (default: {DEFAULT_AGENT})")
    clikit.add_ticks(p, "tick limit, >= 1 (embedded; default: the route's)")
    p.add_argument(
        "--seed", type=clikit.SEED, help="traffic / sensor-noise seed, 0 .. 2**32-1 (embedded; default: the route's)"
    )
    p.add_argument(
        "--record-inputs",
        action="store_true",
        help="record what the model is given each tick into OUT/inputs/ for `automot replay` (AUTOMOT_RECORD_INPUTS=1)",
    )
    clikit.add_overwrite(
        p,
        "embedded: replace the run in a non-empty --out, atomically when the new route ends (a crashed or "
        "interrupted run leaves the old one); carla: start over even if --results-file holds results",
    )
    clikit.add_no_progress(p)
    carla = p.add_argument_group(
        "carla world",
        "the real leaderboard evaluator (leaderboard 2.0 or the Bench2Drive fork, detected) from LEADERBOARD_ROOT / "
        "SCENARIO_RUNNER_ROOT or PYTHONPATH; see leaderboard_configs/BENCH2DRIVE.md",
    )
    carla.add_argument("--routes", metavar="XML", help="leaderboard route file")
    carla.add_argument("--routes-subset", metavar="IDS", help="route ids to run, e.g. 1711,1773 or 1711-1790")
    carla.add_argument("--repetitions", type=clikit.integer(1), help="repetitions per route (evaluator default 1)")
    carla.add_argument("--resume", action="store_true", help="continue the run recorded in --results-file (carla only)")
    carla.add_argument(
        "--results-file",
        metavar="JSON",
        help="the evaluator's results file, passed as its own --checkpoint (default: OUT/results.json)",
    )
    carla.add_argument(
        "--timeout", type=clikit.real(0, lo_open=True), help="CARLA client / agent timeout in seconds, > 0"
    )
    carla.add_argument("--record", metavar="DIR", help="CARLA recorder logs into DIR (on the server)")
    carla.add_argument("--debug", type=clikit.integer(0), help="evaluator debug level, >= 0")
    carla.add_argument("--host", default="localhost")
    carla.add_argument("--port", type=PORT, default=2000, help="CARLA RPC port (default: %(default)s)")
    carla.add_argument(
        "--tm-port", "--traffic-manager-port", dest="tm_port", type=PORT, default=8000, help="traffic manager port"
    )
    carla.add_argument(
        "--tm-seed", "--traffic-manager-seed", dest="tm_seed", type=clikit.SEED, help="traffic manager seed"
    )
    carla.add_argument(
        "--gpu-rank", type=clikit.integer(0), help="Bench2Drive only: GPU its CarlaUE4.sh runs on (default 0)"
    )
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
    if args.checkpoint:  # the model folder drives: the agent config's model.checkpoint, overridden
        clikit.require(args.agent != "expert", "--checkpoint: the expert agent drives without a model")
        args.overrides = [clikit.checkpoint_override(args.checkpoint), *args.overrides]
    if not args.overrides:
        return _drive_carla(args) if args.world == "carla" else _drive_embedded(args)
    clikit.require(args.agent != "expert", "--set: the expert agent has no config to override")
    with tempfile.TemporaryDirectory(prefix="automot-drive-set-") as tmp:
        # The merged, validated config lives for the run; the runner copies the resolved one into --out.
        args.agent_config = overridden_agent_config(_resolve(args.agent_config), args.overrides, Path(tmp))
        return _drive_carla(args) if args.world == "carla" else _drive_embedded(args)


def overridden_agent_config(path: str, overrides: list[str], folder: Path) -> str:
    """Load the agent YAML at ``path``, apply ``--set KEY=VALUE`` overrides, validate the result exactly like the
    file (typed config, ranges, runtime options) and write it into ``folder``; returns the new file's path.
    Any problem raises one ConfigError line naming the key (exit 2) before anything runs."""
    from automot.agent.config import agent_config_from_dict, config_to_dict, load_agent_config, save_agent_config
    from automot.config import apply_overrides

    clikit.require_file(path, "--config")
    data = apply_overrides(config_to_dict(load_agent_config(path)), overrides)
    # The runtime section is the runtime's own RuntimeConfig: its checks (e.g. latency_ticks against
    # max_snapshot_age_ticks) run here, as when the runtime is built.
    cfg = agent_config_from_dict(data, source="--set")
    return str(save_agent_config(cfg, folder / "agent_config.yaml"))


def check_agent_setup(agent: str, config: str, what: str = "--config") -> None:
    """What the AutoMoT agent's ``setup()`` would refuse, checked before a route starts or a byte is written
    (``drive`` and ``eval`` share it): the agent file; for the default agent its config (YAML, fields, ranges,
    runtime options), the rig, the model's checkpoint folder or preset, and the device (no CUDA: exit 3).
    Another agent file reads its config string its own way: only the file itself is checked."""
    from automot.errors import AutoMoTError, ConfigError

    clikit.require(Path(agent).is_file(), f"--agent {agent}: file not found")
    if Path(agent).resolve() != (REPO_ROOT / DEFAULT_AGENT).resolve():
        return
    from automot.agent.config import load_agent_config
    from automot.agent.rigs import get_rig
    from automot.agent.runtime_factory import released_layout, resolve_device

    path = str(config).split("+")[0]  # Bench2Drive passes CONFIG.yaml+save_name
    clikit.require_file(path, what)
    cfg = load_agent_config(path)  # ConfigError (exit 2) names the file and the field
    try:
        get_rig(cfg.rig, cfg.image_size)
        ckpt = cfg.model.checkpoint
        if ckpt:
            folder = Path(ckpt)
            if not folder.exists():
                raise ConfigError(f"{path}: model.checkpoint {ckpt}: not found")
            if released_layout(ckpt) is None and not all(
                (folder / n).is_file() for n in ("config.yaml", "model.safetensors")
            ):
                raise ConfigError(
                    f"{path}: model.checkpoint {ckpt}: not a checkpoint folder (config.yaml + model.safetensors, "
                    "or the released / converted AutoMoT layout)"
                )
        else:
            from automot.model.config import get_config

            get_config(cfg.model.preset)
    except AutoMoTError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    clikit.check_device(resolve_device(cfg.model.device), f"{path}: model.device")


def _drive_embedded(args: argparse.Namespace) -> int:
    from automot.fsio import StagedFiles, remove_temp_dirs
    from automot.world.routes import load_route
    from automot.world.runner import AGENT_CONFIG, EXPERT_AGENT, AgentCrashed, RouteInterrupted, run_route

    # Every check on the command line comes first: a refused run changes nothing on disk.
    clikit.require(args.route, "--route is required for --world embedded (see --list-routes)")
    clikit.require(not args.resume, "--resume: only --world carla continues a run; use --overwrite or another --out")
    clikit.require(args.ticks is None or args.ticks >= 1, f"--ticks {args.ticks}: must be at least 1")
    clikit.require(args.seed is None or 0 <= args.seed < 2**32, f"--seed {args.seed}: must be between 0 and 2**32 - 1")
    route = load_route(args.route)  # UnknownRouteError exits 2 through automot.cli, before anything is written
    agent = EXPERT_AGENT if args.agent == "expert" else _resolve(args.agent)
    config = "" if args.agent == "expert" else _resolve(args.agent_config)
    if args.agent != "expert":  # a bad agent config is refused here, before OUT exists (no DS 0 results.json)
        check_agent_setup(agent, config)
    out_arg = args.out or f"runs/drive/{args.route}"
    notice = "finishing the current tick and writing results.json"
    with clikit.deferred_interrupts("drive", notice) as interrupt, clikit.claim_out(out_arg, args.overwrite) as out:
        remove_temp_dirs(out)  # staging folders of a killed --overwrite run (we hold the folder's lock)
        replacing = args.overwrite and any(n in (*DRIVE_OUTPUTS, AGENT_CONFIG, INPUTS_DIR) for n in _entries(out))
        stage = StagedFiles(out) if replacing else None
        target = stage.staging_dir if stage is not None else out
        # Contract with the agent: AUTOMOT_RECORD_DIR overrides its recorder.out_dir (video.mp4, ticks.jsonl). Both
        # variables are restored afterwards, so a later agent in this process (a second drive, a library user, the
        # test suite) never writes into this run's folder.
        record_dir = os.environ.get("AUTOMOT_RECORD_DIR")
        os.environ["AUTOMOT_RECORD_DIR"] = str(target.resolve())
        record_inputs = os.environ.get("AUTOMOT_RECORD_INPUTS")
        if getattr(args, "record_inputs", False):
            os.environ["AUTOMOT_RECORD_INPUTS"] = "1"  # contract with the agent (agent/input_recorder.py)
        kept = f"; --overwrite: this run was discarded and {out} keeps the earlier run"
        try:
            results = run_route(
                route,
                agent,
                config,
                target,
                ticks=args.ticks,
                seed=args.seed,
                progress=not args.no_progress,
                interrupt=interrupt,
            )
            if stage is not None:  # the route ended: swap the new run in (results.json last)
                # every file of the earlier run not written again goes, inputs/ included (else replay and view
                # would read the old run's recorded inputs as this run's)
                stage.commit(last=("results.json",), replace=(*DRIVE_OUTPUTS, AGENT_CONFIG, INPUTS_DIR))
        except RouteInterrupted as exc:
            if stage is None:
                raise
            raise clikit.Interrupted(str(exc).split(" (results in ")[0] + kept) from None
        except AgentCrashed as exc:  # RunFailed (5), unless the cause has its own code: a bad agent config exits 2
            cause = exc.__cause__
            code = clikit.ExitCode.RUN_FAILED
            if isinstance(cause, clikit.AutoMoTError) and cause.exit_code not in (
                clikit.ExitCode.INTERNAL,
                clikit.ExitCode.RUN_FAILED,
            ):
                code = cause.exit_code
            if stage is None and code == clikit.ExitCode.RUN_FAILED:
                raise
            message = str(exc) if stage is None else str(exc).split(" (results in ")[0] + kept
            raise clikit.error_for(code, message) from exc
        finally:
            if stage is not None:  # nothing left after a commit; a failed or interrupted run's files go
                stage.discard()
            for name, value in (("AUTOMOT_RECORD_DIR", record_dir), ("AUTOMOT_RECORD_INPUTS", record_inputs)):
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    record = results["_checkpoint"]["records"][0]
    print(f"route {args.route}: {record['status']}")
    print(
        f"  driving score {results['score_composed']:.2f}  route completion {results['score_route']:.2f}  "
        f"penalty {results['score_penalty']:.3f}  ({record['meta']['duration_game']:.1f} s simulated, "
        f"{record['meta']['duration_system']:.1f} s wall)"
    )
    for key, items in record["infractions"].items():
        if key == "min_speed_infractions" and items:  # readings, not infractions: one line (automot inspect too)
            pcts = [float(m.group(1)) for m in (re.search(r"([\d.]+)%", str(i)) for i in items) if m]
            mean = f"mean {sum(pcts) / len(pcts):.2f} %, " if pcts else ""
            print(f"  min speed: {len(items)} readings, {mean}{sum(p < 100.0 for p in pcts)} below 100 %")
            continue
        for item in items:
            print(f"  {key}: {item}")
    note = _pipeline_note(out / "summary.jsonl")
    if note:
        print(f"  {note}")
    print(f"  results: {out / 'results.json'}")
    if interrupt.requested:  # the signal came after the route had ended: the results above are complete
        raise clikit.Interrupted(
            f"{interrupt.signal_name} after the route had ended; {out / 'results.json'} is complete"
        )
    return 0


def _pipeline_note(summary: Path) -> str | None:
    """One line on the pipelined runtime's waits from the recorder's summary.jsonl (None: not pipelined / absent)."""
    try:
        stats = json.loads(summary.read_text().splitlines()[0]).get("runtime_stats") or {}
    except (OSError, ValueError, IndexError):
        return None
    p = stats.get("pipeline")
    if not isinstance(p, dict):
        return None
    return (
        f"pipelined runtime (K={p['latency_ticks']}, every {p['refresh_every']}): the fast path waited at "
        f"{p['waits']} of {p['due']} publication ticks ({p['wait_ms_total']:.1f} ms in all), "
        f"{p['deadline_misses']} deadline misses (summary.jsonl runtime_stats)"
    )


def _entries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir()]


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
    results = getattr(args, "results_file", None)
    checkpoint = Path(results) if results else out / "results.json"
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
    from automot.fsio import lock_out

    install = evaluator.locate(args.leaderboard_root, args.scenario_runner_root)
    out = Path(args.out or "runs/drive/carla")
    run = evaluator_run(args, out)
    evaluator.check_run(install, run, overwrite=args.overwrite)  # before any simulator is touched
    out = clikit.prepare_out(out, overwrite=True)  # a file or unwritable path is refused; the checkpoint rule is above
    cmd = evaluator.build_command(install, run)
    with lock_out(out):  # one evaluator per output folder
        print(f"running ({install.flavour}, in {install.workdir}):", " ".join(cmd), flush=True)
        code = subprocess.call(cmd, cwd=install.workdir, env=evaluator.evaluator_env(install))
    if code != 0:
        raise clikit.RunFailed(f"the leaderboard evaluator exited with code {code} (results in {run.checkpoint})")
    return 0
