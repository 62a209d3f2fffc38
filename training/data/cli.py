"""``automot data`` subcommands (registered by automot/cli.py): ``automot data doctor DIR [--json]``.

A dataset that is not a dataset (or not found) exits 2; a dataset with more errors than ``--max-errors`` exits 4
(``ExitCode.CHECK_FAILED``) after the summary / JSON is printed and the report written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from automot import clikit
from automot.errors import CheckFailed, ExitCode


def register(subparsers: argparse._SubParsersAction) -> None:
    data = clikit.add_command(
        subparsers,
        "data",
        help="dataset tools: `automot data doctor DIR` validates a dataset folder",
        func=_data_help,
    )
    data_sub = clikit.add_subcommands(data, "data_command", "DATA_COMMAND")
    data.set_defaults(_data_parser=data)
    doctor = clikit.add_command(
        data_sub,
        "doctor",
        help="validate a dataset folder (automot / bench2drive / pdm_lite) before a long training job",
        func=_doctor,
        description=(
            "Counts routes and frames; finds missing / corrupt files, None / NaN fields, non-monotonic frames and\n"
            "timestamps, implausible targets (e.g. a target point 100 m to the side); summarises meta-actions and\n"
            "speeds. Prints a summary (or the report with --json), writes the JSON report, exits 4 when the errors\n"
            "exceed --max-errors. The checks are listed in training/data/doctor.py."
        ),
    )
    doctor.add_argument("dir", metavar="DIR", help="dataset folder (a root, a route folder or a Bench2Drive DATAROOT)")
    doctor.add_argument(
        "--format", choices=["automot", "bench2drive", "pdm_lite"], help="dataset layout (default: detected)"
    )
    clikit.add_json(doctor, "print the JSON report instead of the summary")
    doctor.add_argument(
        "--report", help="also write the JSON report to this file (never inside DIR; default: no file is written)"
    )
    doctor.add_argument(
        "--max-errors", type=clikit.integer(0), default=0, help="errors tolerated before exiting 4 (default 0)"
    )
    doctor.add_argument("--fast", action="store_true", help="only the fast checks `automot train` runs at start-up")
    doctor.add_argument("--camera", help="automot format: camera whose frames are checked (default: the first)")
    from automot.training.bev_cache_cli import register_bev_cache

    register_bev_cache(data_sub)


def _data_help(args: argparse.Namespace) -> int:
    args._data_parser.print_help()
    return int(ExitCode.USAGE)


def _doctor(args: argparse.Namespace) -> int:
    from automot.fsio import atomic_write_json
    from automot.outputs import check_output_file
    from automot.training.data.doctor import run_doctor

    clikit.require(args.max_errors >= 0, f"--max-errors: must be >= 0, got {args.max_errors}")
    root = Path(args.dir)
    clikit.require(root.is_dir(), f"DIR {root}: dataset folder not found")
    # A command writes only where it is told to, and never into what it reads (the dataset's meta.json): the report
    # file exists only with --report, checked (inside DIR, a folder, unwritable: exit 2) before the dataset is read.
    report_path = check_output_file(args.report, inputs=[root], what="--report") if args.report else None
    report = run_doctor(root, args.format, fast=args.fast, max_errors=args.max_errors, camera=args.camera)
    data = report.to_json()
    if report_path is not None:
        atomic_write_json(report_path, data)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(report.summary())
        if report_path is not None:
            print(f"report: {report_path}")
    if not report.ok:
        where = f" (report: {report_path})" if report_path is not None else " (--report FILE writes the findings)"
        raise CheckFailed(f"{report.error_count} dataset errors exceed --max-errors {args.max_errors}{where}")
    return 0
