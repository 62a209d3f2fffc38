"""`automot model`: inspect a preset or checkpoint (parameter counts per part, layer layout)."""

from __future__ import annotations

import argparse
import json

from automot import clikit


def register(sub: argparse._SubParsersAction) -> None:
    p = clikit.add_command(
        sub, "model", help="print parameter counts and layer layout of a preset or checkpoint", func=_run
    )
    clikit.add_model_source(p, preset_default="tiny")
    clikit.add_json(p)


def _run(args: argparse.Namespace) -> int:
    from automot.model import build_model
    from automot.model.summary import parameter_summary

    # ConfigError (bad preset / YAML) and PretrainedLoadError (bad checkpoint dir) exit 2 through automot.cli.
    if args.checkpoint:
        from automot.model.io import load_pretrained

        model = load_pretrained(args.checkpoint, device="cpu")
    else:
        model = build_model(args.preset, device="meta")  # meta: counts without allocating weights
    summary = parameter_summary(model)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for part, n in summary["parameters"].items():
            print(f"{part:>14}: {n / 1e6:10.2f} M")
        print(json.dumps(summary["layout"], indent=2))
    return 0
