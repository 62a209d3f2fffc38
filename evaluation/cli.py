"""``automot eval``: a whole evaluation (a leaderboard / Bench2Drive route file in CARLA, or the embedded routes
over seeds) on a local Ray instance or a Ray cluster, with crash recovery, resume, merge and report.

::

    automot eval --world carla --routes ROUTES.xml --agent-config CFG.yaml --out DIR [--flavour ...]
                 [--gpus 0,1,2,3 | --ray-address ADDR] [--workers-per-gpu K] [--carla-root PATH | --carla-image IMG]
                 [--routes-subset IDS] [--repetitions N] [--max-retries 3] [--route-timeout S] [--resume]
    automot eval --routes all|NAMES --seeds 0-4 --out DIR [--ticks N] [--workers K]   (--world embedded, the default)
    automot eval report DIR
    automot eval compare A B [--out DIR] [--json] [--intersect]

Each route ends up in ``DIR/routes/<route_id>/`` (complete or absent, automot.evaluation.records); re-running
into the same DIR (``--resume`` says so explicitly) runs only the routes without a complete folder. Then the merge
(``DIR/results.json``, ``DIR/merged.json``) and the report (``DIR/report.md``, ``DIR/report.html``) are written
from what is in DIR. Exit 0 when every route has a record (routes that failed after all retries are recorded
with score 0 and listed), 2 bad options, 3 Ray / CARLA / evaluator missing, 130 interrupted (re-run to resume).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from automot import clikit
from automot.errors import EnvironmentProblem, Interrupted

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AGENT = "agent/automot_agent.py"
DEFAULT_EMBEDDED_CONFIG = "leaderboard_configs/demo_tiny.yaml"
EVAL_FILE = "eval.json"  # the routes this DIR evaluates (checked when re-running into it)
SECONDS = clikit.real(0, lo_open=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = clikit.add_command(
        subparsers,
        "eval",
        help="full evaluation of a route file (CARLA) or the embedded routes, on Ray; `eval report DIR`",
        func=_cmd_eval,
        description=__doc__.split("::")[0].strip(),
    )
    p.add_argument(
        "--routes", help="'all' / comma-separated route names (embedded), or a leaderboard route XML (carla)"
    )
    p.add_argument("--agent-config", metavar="CFG.yaml", help="agent config (embedded default: demo_tiny.yaml)")
    p.add_argument("--agent", default=DEFAULT_AGENT, help=f"agent file (default: {DEFAULT_AGENT})")
    clikit.add_set(
        p,
        "override a field of the agent config (e.g. --set runtime.latency_ticks=3); the merged config is saved as "
        "DIR/agent_config.yaml and used by every route",
    )
    clikit.add_checkpoint(p, "evaluate this model instead of the agent config's model.checkpoint")
    clikit.add_out(p, "evaluation folder (re-running into it resumes)")
    clikit.add_world(p)
    p.add_argument("--flavour", choices=("leaderboard", "bench2drive"), help="evaluator flavour (default: detected)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--gpus", help="GPU ids on this node, e.g. 0,1,2,3 (default: 0)")
    where.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster (one worker per GPU slot)")
    p.add_argument(
        "--workers-per-gpu", type=clikit.integer(1), default=1, metavar="K", help="simulators per GPU (default: 1)"
    )
    sim = p.add_mutually_exclusive_group()
    sim.add_argument("--carla-root", metavar="PATH", help="CARLA 0.9.15 folder with CarlaUE4.sh (default: CARLA_ROOT)")
    sim.add_argument("--carla-image", metavar="IMAGE", help="run the server in a container, e.g. carlasim/carla:0.9.15")
    p.add_argument("--routes-subset", metavar="IDS", help="route ids, e.g. 1711,1773 or 1711-1790")
    p.add_argument("--repetitions", type=clikit.integer(1), help="repetitions per route (evaluator default 1)")
    p.add_argument(
        "--max-retries", type=clikit.integer(0), default=3, help="retries of a crashed / hung route (default: 3)"
    )
    p.add_argument("--route-timeout", type=SECONDS, default=7200.0, metavar="S", help="watchdog per route attempt, > 0")
    p.add_argument("--resume", action="store_true", help="continue the eval in --out (re-running into it does too)")
    clikit.add_seeds(
        p,
        "seeds, e.g. 0-4 or 0,3: each (route, seed) is one job, routes/<route_id>_seed<k>/ (carla: the "
        "evaluator's --traffic-manager-seed)",
    )
    p.set_defaults(seeds=None)  # not given: embedded seed 0; carla one job per route, folders routes/<route_id>/
    p.add_argument(
        "--restart-server-every",
        type=clikit.integer(0),
        default=1,
        metavar="N",
        help="carla: a fresh CARLA server every N routes (default: 1, as LEAD does against long-lived servers' "
        "rendering bugs; 0: only after a failure)",
    )
    p.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help="carla: run even when the CARLA client and server versions differ (checked before the first route)",
    )
    p.add_argument("--carla-client-version", help=argparse.SUPPRESS)  # tests: the client version to compare
    clikit.add_ticks(p, "embedded: tick limit per route (default: the route's)")
    p.add_argument("--workers", type=clikit.integer(1), help="embedded: routes at once (default: the cluster's CPUs)")
    p.add_argument(
        "--record-inputs",
        action="store_true",
        help="record what the model is given each tick into each route's inputs/ for `automot replay` "
        "(AUTOMOT_RECORD_INPUTS=1, as drive --record-inputs)",
    )
    p.add_argument("--leaderboard-root", help="folder holding the leaderboard package (default: LEADERBOARD_ROOT)")
    p.add_argument("--scenario-runner-root", help="folder holding srunner (default: SCENARIO_RUNNER_ROOT)")
    p.add_argument("--progress-every", type=SECONDS, default=30.0, metavar="S", help="progress line period (s), > 0")
    # Testing / unusual servers: a server command template and an evaluator command replacing the real ones.
    p.add_argument("--simulator-command", help=argparse.SUPPRESS)
    p.add_argument("--evaluator-command", help=argparse.SUPPRESS)
    p.add_argument("--probe", choices=("carla", "tcp"), default="carla", help=argparse.SUPPRESS)
    p.add_argument("--simulator-start-timeout", type=SECONDS, default=180.0, help=argparse.SUPPRESS)
    # `automot eval SUBCOMMAND ...`: each sub-command is a parser of its own (its errors name it).
    sub = clikit.add_subcommands(p, "eval_command", "[SUBCOMMAND]")
    report = clikit.add_command(
        sub,
        "report",
        help="`automot eval report DIR`: (re)compute the merge, metrics and report of an eval folder",
        func=_cmd_report,
    )
    report.add_argument("dir", metavar="DIR", help="an `automot eval` --out folder")
    compare = clikit.add_command(
        sub,
        "compare",
        help="`automot eval compare A B`: paired comparison of two eval folders (B minus A, bootstrap CI, p-value)",
        func=_cmd_compare,
    )
    from automot.evaluation.compare import add_arguments as add_compare_arguments

    add_compare_arguments(compare)


def _resolve(path: str) -> str:
    return path if Path(path).exists() or not (REPO_ROOT / path).exists() else str(REPO_ROOT / path)


def build_jobs(args: argparse.Namespace):
    from automot.evaluation.records import Job, read_route_file, select_subset

    if args.world == "embedded":
        from automot.world.routes import list_routes, load_route

        clikit.require(
            not (args.routes.endswith(".xml") or Path(args.routes).is_file()),
            f"--routes {args.routes}: a route file is for --world carla (the default world, embedded, takes 'all' "
            "or route names)",
        )
        names = list_routes() if args.routes == "all" else clikit.split_list(args.routes, "--routes", list_routes())
        seeds = args.seeds or [0]
        jobs = []
        for name in names:
            limit = float(args.ticks or load_route(name).tick_limit)
            jobs += [Job(f"{name}_seed{s}", name, limit, s) for s in seeds]
        return jobs
    if not Path(args.routes).is_file() and not args.routes.endswith(".xml"):
        from automot.world.routes import list_routes

        names = list_routes() if args.routes == "all" else args.routes.split(",")
        clikit.require(
            not set(names) <= set(list_routes()),
            f"--routes {args.routes}: embedded route names; pass --world embedded (--world carla takes a route XML)",
        )
    routes = read_route_file(clikit.require_file(args.routes, "--routes"))
    chosen = set(select_subset([r for r, _ in routes], args.routes_subset))
    if args.seeds is None:
        return [Job(rid, rid, length) for rid, length in routes if rid in chosen]
    # each (route, seed) one job; the evaluator gets the seed as --traffic-manager-seed
    return [Job(f"{rid}_seed{s}", rid, length, s) for rid, length in routes if rid in chosen for s in args.seeds]


def _split_command(text: str | None) -> list[str] | None:
    if not text:
        return None
    text = text.strip()
    return json.loads(text) if text.startswith("[") else shlex.split(text)


def build_config(args: argparse.Namespace, out: Path):
    import os

    from automot.evaluation.engine import EvalConfig
    from automot.evaluation.simulator import SimulatorSpec

    agent = _resolve(args.agent)
    clikit.require(Path(agent).is_file(), f"--agent {agent}: file not found")
    cfg = EvalConfig(
        out=str(out.resolve()),
        world=args.world,
        routes=str(Path(args.routes).resolve()) if args.world == "carla" else args.routes,
        agent=str(Path(agent).resolve()),
        max_retries=args.max_retries,
        route_timeout=args.route_timeout,
        repetitions=args.repetitions,
        ticks=args.ticks,
        leaderboard_root=args.leaderboard_root,
        scenario_runner_root=args.scenario_runner_root,
        flavour={"leaderboard": "leaderboard-2.0", "bench2drive": "bench2drive", None: None}[args.flavour],
        # Ray workers do not see this process's environment: the AUTOMOT_* settings (e.g. the port-lock folder,
        # AUTOMOT_DEBUG) travel with the config to the workers and the evaluators they start.
        env={
            **{k: v for k, v in os.environ.items() if k.startswith("AUTOMOT_")},
            **({"AUTOMOT_RECORD_INPUTS": "1"} if getattr(args, "record_inputs", False) else {}),
        },
    )
    if args.world == "embedded":
        config = _resolve(args.agent_config or DEFAULT_EMBEDDED_CONFIG)
        cfg.agent_config = str(Path(config).resolve()) if Path(config).exists() else config
        return cfg
    clikit.require(args.agent_config, "--agent-config is required for --world carla")
    cfg.agent_config = _resolve(args.agent_config)
    sim_cmd = _split_command(args.simulator_command)
    carla_root = args.carla_root or (None if args.carla_image or sim_cmd else os.environ.get("CARLA_ROOT"))
    if not (sim_cmd or args.carla_image or carla_root):
        raise EnvironmentProblem("no CARLA server: pass --carla-root PATH (or set CARLA_ROOT) or --carla-image IMAGE")
    if carla_root and not sim_cmd:
        clikit.require((Path(carla_root) / "CarlaUE4.sh").is_file(), f"--carla-root {carla_root}: no CarlaUE4.sh there")
    cfg.simulator = SimulatorSpec(
        carla_root=None if sim_cmd else carla_root,
        image=None if sim_cmd else args.carla_image,
        command=sim_cmd,
        probe=args.probe,
        start_timeout=args.simulator_start_timeout,
    )
    cfg.evaluator_command = _split_command(args.evaluator_command)
    if args.probe == "carla":
        try:
            import carla  # noqa: F401
        except ImportError:
            raise EnvironmentProblem("the CARLA client is missing: pip install -e '.[carla]'") from None
    if cfg.evaluator_command is None:
        from automot.world import evaluator

        install = evaluator.locate(args.leaderboard_root, args.scenario_runner_root)
        evaluator.check_route_parser(install)
        cfg.flavour = cfg.flavour or install.flavour
    if cfg.flavour == "bench2drive" and not sim_cmd:
        # The fork starts CARLA itself on --port and, after a crash, kills every server whose command line has
        # the same -graphicsadapter: two workers on one GPU would kill each other's servers.
        clikit.require(carla_root, "--flavour bench2drive: the fork starts $CARLA_ROOT/CarlaUE4.sh; pass --carla-root")
        clikit.require(
            args.workers_per_gpu == 1,
            "--workers-per-gpu: the Bench2Drive fork kills every CARLA with its -graphicsadapter after a crash, so "
            "it runs one worker per GPU",
        )
    return cfg


def _accept_existing(out: Path) -> bool:
    return (out / EVAL_FILE).is_file() or (out / "routes").is_dir()


def _init_ray(address: str | None) -> bool:
    """Connect to ``address`` (or Ray's own RAY_ADDRESS) or start a local instance; True when this process
    started it. With ``--gpus`` and RAY_ADDRESS, the workers use those GPU ids of the node they land on."""
    import os

    try:
        import ray
    except ImportError:
        raise EnvironmentProblem("Ray is missing: pip install -e '.[eval]'") from None
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return False
    kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    # ray.init installs its own SIGTERM handler (a stack dump and exit 1): keep automot's, so SIGTERM is an
    # interrupt like SIGINT (exit 130, the routes recorded so far kept) for eval as for every command.
    import signal

    handler = signal.getsignal(signal.SIGTERM)
    try:
        if address:
            ray.init(address=address, **{k: v for k, v in kw.items() if k != "include_dashboard"})
            return False
        ray.init(**kw)
        return True
    finally:
        if handler is not None:
            try:
                signal.signal(signal.SIGTERM, handler)
            except ValueError:  # not the main thread: nothing was installed there either
                pass


def finish(out: Path, job_ids: list[str], routes_xml: str | None = None, repetitions: int | None = None) -> dict | None:
    """The other half of `automot eval`: merge (results.json, merged.json) and the report, when available."""
    try:
        from automot.evaluation.merge import merge_eval
    except ImportError:
        print("eval: merge not available in this version (automot.evaluation.merge)", file=sys.stderr)
        return None
    merged = merge_eval(out, job_ids, routes_xml=routes_xml, repetitions=repetitions or 1)
    try:
        from automot.evaluation.report import write_report
    except ImportError:
        print("eval: report not available in this version (automot.evaluation.report)", file=sys.stderr)
        return merged
    write_report(out)
    return merged


def _cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    clikit.require(out.is_dir(), f"DIR {out}: not a folder")
    try:
        from automot.evaluation.report import report_main
    except ImportError:
        raise EnvironmentProblem("eval report: not available in this version (automot.evaluation.report)") from None
    return int(report_main(out) or 0)


def _cmd_compare(args: argparse.Namespace) -> int:
    from automot.evaluation.compare import main as compare_main

    return compare_main(args)


def _check_agent(cfg, args: argparse.Namespace) -> None:
    """The agent file, its config (with --set / --checkpoint applied), the checkpoint and the device, checked before
    any route starts: a broken setup is refused (exit 2, or 3 for a missing GPU), never run and recorded as routes
    that 'failed' with DS 0 that a re-run would then keep."""
    from automot.world.cli import check_agent_setup, overridden_agent_config

    if not args.overrides:
        check_agent_setup(cfg.agent, cfg.agent_config, what="--agent-config")
        return
    with tempfile.TemporaryDirectory(prefix="automot-eval-check-") as tmp:
        merged = overridden_agent_config(cfg.agent_config, args.overrides, Path(tmp))
        check_agent_setup(cfg.agent, merged, what="--agent-config")


def _cmd_eval(args: argparse.Namespace) -> int:
    clikit.require(args.routes, "--routes is required ('all' or route names, or a route XML with --world carla)")
    clikit.require(args.out, "--out is required")
    if args.checkpoint:  # the model folder every route drives with: the agent config's model.checkpoint, overridden
        args.overrides = [clikit.checkpoint_override(args.checkpoint), *args.overrides]
    if args.world == "carla":
        clikit.require(args.ticks is None, "--ticks: embedded world only")
    jobs = build_jobs(args)
    job_ids = [j.job_id for j in jobs]
    from automot.fsio import atomic_write_json

    cfg = build_config(args, Path(args.out))  # every check before anything is written
    _check_agent(cfg, args)
    cfg.restart_server_every = args.restart_server_every
    from automot.evaluation import identity as ident_mod
    from automot.evaluation.folder import finish_folder, open_folder

    if args.overrides:
        from automot.world.cli import overridden_agent_config

        with tempfile.TemporaryDirectory(prefix="automot-eval-set-") as tmp:  # validate before anything is written
            now = ident_mod.identity(overridden_agent_config(cfg.agent_config, args.overrides, Path(tmp)))
    else:
        now = ident_mod.identity(cfg.agent_config)
    now["argv"] = sys.argv[1:]
    with clikit.claim_out(args.out, accept_existing=_accept_existing) as out:
        # one configuration per folder (refused with the differing keys); more seeds / routes only add jobs
        all_ids, cfg.record_extra = open_folder(
            out, world=args.world, routes=cfg.routes, job_ids=job_ids, agent_config=cfg.agent_config,
            checkpoint=None, argv=sys.argv[1:], saved_config=bool(args.overrides), now=now,
        )  # fmt: skip
        if args.overrides:
            # Workers (possibly on other nodes of a shared file system) read the merged config from DIR.
            cfg.agent_config = overridden_agent_config(cfg.agent_config, args.overrides, out)
        from automot.evaluation import records
        from automot.evaluation.engine import run_jobs

        records.remove_stale_stages(out)
        for job_id, why in records.set_aside_unreadable(out, job_ids):  # re-run, never counted as recorded
            print(f"eval: route {job_id}: its record cannot be read ({why}); running it again", file=sys.stderr)
        if args.world == "carla":  # before the first route: a client/server version mismatch stops the run (3)
            from automot.evaluation.hygiene import check_versions, client_version

            client = args.carla_client_version or (client_version() if args.probe == "carla" else None)
            versions = check_versions(cfg.simulator, out, client, args.allow_version_mismatch)
            if versions[0]:
                print(f"eval: CARLA client {versions[0]}, server {versions[1]}", file=sys.stderr)
        from automot.evaluation.live import LiveReport

        xml = cfg.routes if args.world == "carla" else None
        live = LiveReport(out, all_ids, routes_xml=xml, repetitions=args.repetitions or 1)
        done = sum(records.is_complete(out, j) for j in job_ids)
        if done:
            print(f"eval: resuming {out}: {done}/{len(job_ids)} routes already recorded", file=sys.stderr)
        started = _init_ray(args.ray_address)
        import ray

        t0 = time.monotonic()
        try:
            if args.world == "embedded":
                workers = args.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
                summaries = run_jobs(cfg, jobs, [], workers=workers, progress_every=args.progress_every, on_finish=live)
            elif args.ray_address and not args.gpus:
                n_gpus = int(ray.cluster_resources().get("GPU", 0))
                if n_gpus < 1:
                    raise EnvironmentProblem(f"--ray-address {args.ray_address}: the cluster has no GPU")
                slots = [None] * (n_gpus * args.workers_per_gpu)
                summaries = run_jobs(
                    cfg,
                    jobs,
                    slots,
                    ray_gpus_per_slot=1.0 / args.workers_per_gpu,
                    progress_every=args.progress_every,
                    on_finish=live,
                )
            else:
                gpus = clikit.split_list(args.gpus or "0", "--gpus")
                slots = [g for g in gpus for _ in range(args.workers_per_gpu)]
                summaries = run_jobs(cfg, jobs, slots, progress_every=args.progress_every, on_finish=live)
        except KeyboardInterrupt:
            kept = sum(records.is_complete(out, j) for j in job_ids)
            raise Interrupted(
                f"interrupted: {kept}/{len(job_ids)} routes recorded in {out / 'routes'}; run the same command "
                "again (or with --resume) to run the rest"
            ) from None
        finally:
            live.close()
            if started:
                ray.shutdown()
        wall = time.monotonic() - t0
        atomic_write_json(out / ".eval" / "last_run.json", {"wall_s": round(wall, 3), "routes_run": summaries})
        missing = [j for j in job_ids if not records.is_complete(out, j)]
        failed = [s["job_id"] for s in summaries if s.get("status") == "failed"]
        finish(out, all_ids, routes_xml=xml, repetitions=args.repetitions)
        summary = finish_folder(out, all_ids, xml, args.repetitions)
    recorded = sum(records.is_complete(out, j) for j in all_ids)
    print(f"eval: {recorded}/{len(all_ids)} routes recorded in {out} ({wall:.1f} s)")
    if summary is not None:
        from automot.evaluation.report import headline

        print(headline(summary))
        print(f"report: {out / 'report.html'}")
    if failed:
        print(f"  failed after retries (scored 0): {', '.join(failed)}")
    if missing:
        raise clikit.RunFailed(f"{len(missing)} route(s) have no record: {', '.join(missing)}")
    return 0
