"""``automot train`` and ``automot collect`` subcommands (registered by automot/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train AutoMoT stages (action / joint / refiner) from a YAML config",
        description="Staged training. Multi-GPU: torchrun --nproc_per_node N -m automot.cli train --config ...",
    )
    train.add_argument("--config", help="training config YAML (default with --resume: the checkpoint's own)")
    train.add_argument("--resume", help="checkpoint directory, or a run directory (its latest checkpoint)")
    train.add_argument("--output-dir", help="override output_dir of the config")
    train.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (with a checkpoint)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=_train)

    collect = subparsers.add_parser(
        "collect",
        help="drive the privileged expert in the embedded world and write a training dataset",
        description="Writes the dataset format documented in training/data/automot_format.py.",
    )
    collect.add_argument("--world", default="embedded", choices=["embedded"], help="simulator (only 'embedded')")
    collect.add_argument("--routes", required=True, help="comma-separated route names, or 'all'")
    collect.add_argument("--episodes", type=int, default=1, help="episodes per route (different traffic seeds)")
    collect.add_argument("--out", required=True, help="dataset root directory")
    collect.add_argument("--rig", default="automot-front", help="agent sensor rig whose cameras are recorded")
    collect.add_argument("--image-size", help="WIDTHxHEIGHT for the rig cameras (default: the rig's size)")
    collect.add_argument("--seed", type=int, default=0, help="added to each route's seed")
    collect.add_argument("--frame-every", type=int, default=5, help="store a frame every N ticks")
    collect.add_argument("--sample-every", type=int, default=10, help="a training sample every N ticks")
    collect.add_argument("--image-format", default="jpg", choices=["jpg", "png"])
    collect.add_argument("--no-qa", action="store_true", help="no scene question/answer pairs")
    collect.add_argument("--min-score", type=float, default=0.0, help="drop episodes with a lower expert DS")
    collect.add_argument("--max-ticks", type=int, help="cap on ticks per episode (default: the route's limit)")
    collect.add_argument("--overwrite", action="store_true", help="delete an existing dataset at --out first")
    collect.add_argument("--no-progress", action="store_true", help="no progress bars")
    collect.set_defaults(func=_collect)


def _train(args: argparse.Namespace) -> int:
    from automot.training.checkpoint import TRAIN_CONFIG, resolve_resume
    from automot.errors import ConfigError
    from automot.training.config import TrainConfig

    if not args.config and not args.resume:
        print("automot train: --config is required (or --resume a checkpoint)", file=sys.stderr)
        return 2
    try:
        if args.config:
            cfg = TrainConfig.load_yaml(args.config)
        else:
            cfg = TrainConfig.load_yaml(resolve_resume(args.resume) / TRAIN_CONFIG)
        if args.output_dir:
            cfg.output_dir = args.output_dir
        if args.no_progress:
            cfg.log.progress = False
    except (ConfigError, FileNotFoundError) as exc:
        print(f"automot train: {exc}", file=sys.stderr)
        return 2
    from automot.training.distributed import shutdown
    from automot.training.trainer import Trainer

    trainer = Trainer(cfg, resume=args.resume)
    try:
        result = trainer.fit(max_steps=args.max_steps)
    finally:
        shutdown(trainer.info)
    if trainer.info.is_main:
        last = result["val_history"][-1] if result["val_history"] else {}
        final = str(result["final_dir"]) if result["final_dir"] else None
        print(json.dumps({"final_dir": final, "global_step": result["global_step"], **last}))
    return 0


def _collect(args: argparse.Namespace) -> int:
    from automot.training.collect import CollectOptions, collect

    if args.routes == "all":
        from automot.world.routes import list_routes

        routes = list_routes()
    else:
        routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    size = None
    if args.image_size:
        try:
            w, h = (int(v) for v in args.image_size.lower().split("x"))
            size = (w, h)
        except ValueError:
            print(f"automot collect: --image-size {args.image_size!r}: expected WIDTHxHEIGHT", file=sys.stderr)
            return 2
    opts = CollectOptions(
        routes=routes,
        episodes=args.episodes,
        out=args.out,
        rig=args.rig,
        image_size=size,
        seed=args.seed,
        frame_every=args.frame_every,
        sample_every=args.sample_every,
        image_format=args.image_format,
        qa=not args.no_qa,
        min_score=args.min_score,
        max_ticks=args.max_ticks,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    try:
        summary = collect(opts)
    except ValueError as exc:
        print(f"automot collect: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "out": str(Path(args.out)),
                "episodes": len(summary["episodes"]),
                "kept": sum(r["kept"] for r in summary["episodes"]),
                "total_samples": summary["total_samples"],
                "mean_expert_driving_score": round(summary["mean_driving_score"], 2),
            }
        )
    )
    return 0
