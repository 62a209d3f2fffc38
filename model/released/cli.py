"""`automot convert`: released AutoMoT checkpoint -> our checkpoint format, or list the tensors it must contain."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from automot import clikit


def register(sub: argparse._SubParsersAction) -> None:
    p = clikit.add_command(
        sub,
        "convert",
        help="convert the released AutoMoT checkpoint (or list the tensors the loader expects)",
        func=_run,
        description=(
            "Map every tensor of the released model.safetensors (or model-*.safetensors shards; ema.safetensors "
            "with --ema) to our modules by exact name and shape. Missing, unexpected or mis-shaped tensors are "
            "errors naming them. Optional tensors: the tied LM head and BatchNorm num_batches_tracked counters."
        ),
    )
    p.add_argument(
        "--from-automot", metavar="DIR", help="released checkpoint folder (config.json, model.safetensors, ...)"
    )
    clikit.add_out(p, "output folder (our format: model.safetensors + config.yaml + BEV encoder)")
    clikit.add_overwrite(
        p,
        "convert into an existing, non-empty --out, replacing its files (all are written first and renamed at the "
        "end: an interrupted conversion leaves the earlier one intact)",
    )
    p.add_argument(
        "--ema",
        action="store_true",
        help="read ema.safetensors instead of model.safetensors (the original's USE_EMA_WEIGHTS=1; a missing file "
        "is an error here, where the original silently fell back to model.safetensors)",
    )
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="stored dtype (default bf16, as released)")
    p.add_argument("--preset", default="automot-4b", help="preset the folder is checked against (default automot-4b)")
    p.add_argument("--allow-config-mismatch", action="store_true", help="use config.json values where they differ")
    p.add_argument(
        "--expected-keys",
        action="store_true",
        help="print 'name shape' for every required tensor of the released format (BEV layout from --from-automot's "
        "bev_config.json when given, TF++ defaults otherwise) and exit",
    )


def _expected(args: argparse.Namespace) -> dict:
    from automot.model.config import get_config
    from automot.model.released.bev_config import load_bev_config
    from automot.model.released.checkpoint import is_optional
    from automot.model.released.hf_config import read_released_folder, released_model_config
    from automot.model.released.loader import expected_released_tensors

    if args.from_automot:
        folder = read_released_folder(args.from_automot)
        cfg, _ = released_model_config(folder, args.preset, strict=not args.allow_config_mismatch)
        bev = folder.bev
    else:
        cfg, bev = get_config(args.preset), load_bev_config(None)
        print("note: BEV encoder layout from TF++ defaults (no bev_config.json given; unverified)", file=sys.stderr)
    return {n: s for n, s in expected_released_tensors(cfg, bev).items() if not is_optional(n)}


def _run(args: argparse.Namespace) -> int:
    # ConfigError and PretrainedLoadError (a bad released folder) exit 2 through automot.cli.
    if args.expected_keys:
        for name, shape in _expected(args).items():
            print(f"{name} {list(shape)}")
        return 0
    clikit.require(args.from_automot and args.out, "--from-automot DIR and --out DIR are required (or --expected-keys)")
    from automot.model.released.loader import convert_released

    clikit.require(Path(args.from_automot).is_dir(), f"--from-automot {args.from_automot}: folder not found")
    # Before anything is read or written: --out must not be the source (or inside it), a file, or a non-empty
    # folder without --overwrite.
    clikit.prepare_out(args.out, args.overwrite, source=args.from_automot)
    from automot.fsio import remove_temp_dirs

    remove_temp_dirs(args.out)  # staging folders (.staged.XXXX.tmp) a killed run on this --out left behind
    out = convert_released(
        args.from_automot,
        args.out,
        dtype=args.dtype,
        preset=args.preset,
        ema=args.ema,
        allow_config_mismatch=args.allow_config_mismatch,
    )
    print(f"wrote {out}")
    return 0
