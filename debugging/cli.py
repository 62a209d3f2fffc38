"""``automot inspect`` / ``automot replay`` / ``automot view``: debugging a run from its files.

Imports are lazy (replay needs torch, view needs the ``viz`` extra), so ``automot --help`` stays fast.
"""

from __future__ import annotations

import argparse

from automot import clikit


def register(subparsers: argparse._SubParsersAction) -> None:
    p = clikit.add_command(
        subparsers,
        "inspect",
        help="summarise a run (or every route of an eval folder): infractions with their ticks, latency, staleness",
        func=_cmd_inspect,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a drive --out folder or an eval folder (routes/<id>/)")
    clikit.add_json(p, "print one JSON document instead of text")
    p.add_argument("--before", type=clikit.integer(0), default=5, help="ticks shown before each infraction (default 5)")

    p = clikit.add_command(
        subparsers,
        "replay",
        help="re-run the model open loop on a run's recorded inputs (drive --record-inputs) and compare",
        func=_cmd_replay,
        description=(
            "Feed the inputs recorded by `automot drive --record-inputs` through the runtime again, with the run's "
            "own checkpoint (reproduction check) or another one (--checkpoint / --config: comparison). Writes "
            "OUT/replay.json (and, for a comparison, OUT/compare.mp4)."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder with inputs/ (drive --record-inputs)")
    src = p.add_mutually_exclusive_group()
    clikit.add_checkpoint(src, "replay with this model instead of the run's own (a comparison)")
    src.add_argument("--config", metavar="AGENT.yaml", help="another agent config (model + runtime sections used)")
    p.add_argument("--tick-range", metavar="A:B", help="replay ticks A <= tick < B only (default: every recorded tick)")
    p.add_argument("--mode", help="runtime mode (default: the run's; sync is deterministic)")
    clikit.add_device(p)
    p.add_argument("--no-video", action="store_true", help="comparison: skip the side-by-side video")
    clikit.add_out(p, "output folder for replay.json", required=True)
    clikit.add_overwrite(p)

    _register_redrive(subparsers)

    p = clikit.add_command(
        subparsers,
        "view",
        help="export a run to a Rerun recording (.rrd) or open it in the Rerun viewer (needs the viz extra)",
        func=_cmd_view,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a drive --out folder (or one route folder of an eval)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--save", metavar="FILE.rrd", help="write the recording to this file (a file, not a folder)")
    out.add_argument("--spawn", action="store_true", help="open the Rerun viewer and stream the run into it")
    p.add_argument(
        "--image-every", type=clikit.integer(1), default=1, help="log every n-th camera image only, >= 1 (default 1)"
    )


def _register_redrive(subparsers: argparse._SubParsersAction) -> None:
    p = clikit.add_command(
        subparsers,
        "redrive",
        help="re-simulate an embedded run with its recorded controls up to a tick, then let another agent drive",
        func=_cmd_redrive,
        description=(
            "Counterfactual re-drive (embedded world only): the run's route and seed, its recorded controls up to "
            "--from-tick (the world state checked against its world.jsonl every tick: exit 4 if it differs), then "
            "the run's agent with --checkpoint / --set applied drives on. Writes the usual run files, "
            "OUT/redrive.json and OUT/side_by_side.mp4."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="an embedded drive --out folder (with world.jsonl)")
    p.add_argument("--from-tick", type=clikit.integer(0), required=True, metavar="N", help="hand-over tick, >= 0")
    clikit.add_checkpoint(p, "the model that takes over")
    clikit.add_set(p, "override one field of the run's agent config for the agent that takes over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    clikit.add_out(p, "output folder for the re-drive's run files and redrive.json", required=True)
    clikit.add_overwrite(p)


def _cmd_redrive(args: argparse.Namespace) -> int:
    from automot.debugging.redrive import redrive_main

    return redrive_main(args)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from automot.debugging.inspection import inspect_main

    return inspect_main(args.run_dir, as_json=args.json, before=args.before)


def _cmd_replay(args: argparse.Namespace) -> int:
    from automot.debugging.replay import replay_main

    return replay_main(args)


def _cmd_view(args: argparse.Namespace) -> int:
    from automot.debugging.rerun_export import view_main

    return view_main(args)
