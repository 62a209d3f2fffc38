"""`automot model`: inspect a preset or checkpoint (parameter counts per part, layer layout)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="print parameter counts and layer layout of a preset or checkpoint")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", help="preset name (tiny, small, automot-4b) or a config YAML")
    src.add_argument("--checkpoint", help="checkpoint directory (config.yaml + model.safetensors)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from automot.model import build_model
    from automot.model.config import ConfigError
    from automot.model.summary import parameter_summary
    from automot.model.understanding import PretrainedLoadError

    try:
        if args.checkpoint:
            from automot.model.io import load_pretrained

            model = load_pretrained(args.checkpoint, device="cpu")
        else:
            model = build_model(args.preset, device="meta")  # meta: counts without allocating weights
    except (ConfigError, PretrainedLoadError) as exc:
        print(f"automot model: {exc}", file=sys.stderr)
        return 2
    summary = parameter_summary(model)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for part, n in summary["parameters"].items():
            print(f"{part:>14}: {n / 1e6:10.2f} M")
        print(json.dumps(summary["layout"], indent=2))
    return 0
