"""``automot data bev-cache DATA --checkpoint CKPT`` (registered under ``automot data`` by training/data/cli.py).

A checkpoint without ``bev_encoder.*`` tensors, a missing DATA folder or a bad option exits 2 with one line; the
work itself is training/bev_cache.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from automot import clikit


def register_bev_cache(data_sub: argparse._SubParsersAction) -> None:
    cache = clikit.add_command(
        data_sub,
        "bev-cache",
        help="precompute each PDM-Lite route's BEV-encoder features (route_features.pt) for released-layout training",
        func=_bev_cache,
        description=(
            "Writes ROUTE/bev_encoder_feature/route_features.pt per route (in place, atomically) with the\n"
            "checkpoint's BEV encoder, from rgb/<frame>.jpg + bev_encoder_lidar_bev/<frame>.npy. Routes that already\n"
            "have the file are skipped, so an interrupted run is resumed by running it again."
        ),
    )
    cache.add_argument("data", metavar="DATA", help="PDM-Lite data root (the folder the index files' paths start in)")
    clikit.add_checkpoint(cache, "a converted (automot convert) or released AutoMoT folder with bev_encoder.* tensors")
    cache.add_argument(
        "--sample-list",
        action="append",
        metavar="JSONL",
        help="encode the current frames of these index rows (repeatable); default: every frame with both inputs",
    )
    cache.add_argument(
        "--batch-size", type=clikit.integer(1), default=16, help="frames per encoder call, >= 1 (default 16)"
    )
    clikit.add_device(cache)
    clikit.add_overwrite(cache, "recompute routes that already have route_features.pt")
    clikit.add_no_progress(cache)
    clikit.add_json(cache, "print the summary as JSON")


def _bev_cache(args: argparse.Namespace) -> int:
    from automot.training.bev_cache import run_cache

    root = Path(args.data)
    clikit.require(root.is_dir(), f"DATA {root}: folder not found")
    clikit.require(args.checkpoint, "--checkpoint: required (the folder whose BEV encoder computes the features)")
    for path in args.sample_list or []:
        clikit.require_file(path, "--sample-list")
    summary = run_cache(
        root,
        args.checkpoint,
        batch_size=args.batch_size,
        sample_lists=args.sample_list,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"bev-cache {root}: {summary['written']} route files written, {summary['skipped_existing']} already "
            f"present, {summary['empty']} without encodable frames; {summary['frames']} frames encoded, "
            f"{summary['frames_failed']} left out"
        )
    return 0
