"""``automot train`` and ``automot collect`` subcommands (registered by automot/cli.py).

Errors are raised and reported by automot.cli with the shared exit codes (`automot --help`): a bad config, option
or dataset exits 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from automot import clikit


def register(subparsers: argparse._SubParsersAction) -> None:
    train = clikit.add_command(
        subparsers,
        "train",
        help="train AutoMoT stages (action / joint / refiner) from a YAML config",
        func=_train,
        description="Staged training. Multi-GPU: torchrun --nproc_per_node N -m automot.cli train --config ...",
    )
    train.add_argument("--config", help="training config YAML (default with --resume: the checkpoint's own)")
    train.add_argument("--resume", help="checkpoint directory, or a run directory (its latest checkpoint)")
    clikit.add_out(train, "run folder (checkpoints, scalars.jsonl, final/); default: the config's output_dir")
    clikit.add_deprecated_alias(train, "--output-dir", "--out", dest="out", metavar="DIR")
    clikit.add_set(
        train, "override one field of the training config (e.g. --set optim.lr=1e-4 --set data.batch_size=2)"
    )
    train.add_argument(
        "--max-steps", type=clikit.integer(1), help="stop after this many optimizer steps, >= 1 (with a checkpoint)"
    )
    clikit.add_overwrite(
        train, "train into an existing, non-empty --out (without --resume), replacing the files a run writes"
    )
    clikit.add_no_progress(train)
    dry = train.add_argument_group("memory estimate (training/memory.py; nothing is trained)")
    dry.add_argument(
        "--dry-run", action="store_true", help="print the per-rank GPU memory estimate for FSDP full fine-tuning"
    )
    dry.add_argument("--preset", help="model preset for --dry-run (default: the config's model.preset)")
    dry.add_argument(
        "--world-size", type=clikit.integer(1), default=1, help="number of GPUs (FSDP ranks) for --dry-run"
    )
    dry.add_argument(
        "--micro-batch", type=clikit.integer(1), default=None, help="micro-batch per rank (default: config or 1)"
    )
    clikit.add_json(dry, "--dry-run: print the estimate as JSON")

    collect = clikit.add_command(
        subparsers,
        "collect",
        help="drive the privileged expert in the embedded world and write a training dataset",
        func=_collect,
        description="Writes the dataset format documented in training/data/automot_format.py.",
    )
    clikit.add_world(collect, choices=("embedded",))
    collect.add_argument("--routes", required=True, help="comma-separated route names, or 'all'")
    collect.add_argument(
        "--episodes", type=clikit.integer(1), default=1, help="episodes per route (different traffic seeds)"
    )
    clikit.add_out(collect, "dataset root directory", required=True)
    collect.add_argument("--rig", default="automot-front", help="agent sensor rig whose cameras are recorded")
    collect.add_argument(
        "--image-size",
        type=clikit.image_size,
        metavar="WxH",
        help="WIDTHxHEIGHT for the rig cameras (default: the rig's size)",
    )
    collect.add_argument("--seed", type=clikit.SEED, default=0, help="added to each route's seed, 0 .. 2**32-1")
    collect.add_argument("--frame-every", type=clikit.integer(1), default=5, help="store a frame every N ticks")
    collect.add_argument("--sample-every", type=clikit.integer(1), default=10, help="a training sample every N ticks")
    collect.add_argument("--image-format", default="jpg", choices=["jpg", "png"])
    collect.add_argument("--no-qa", action="store_true", help="no scene question/answer pairs")
    collect.add_argument(
        "--min-score", type=clikit.real(0, 100), default=0.0, help="drop episodes with a lower expert DS (0..100)"
    )
    clikit.add_ticks(collect, "cap on ticks per episode, >= 1 (default: the route's limit)")
    clikit.add_deprecated_alias(collect, "--max-ticks", "--ticks", dest="ticks", type=clikit.integer(1), metavar="N")
    clikit.add_set(collect, "override one field of the collect options (saved as collect_config.yaml, e.g. qa=false)")
    clikit.add_overwrite(
        collect, "delete an existing dataset at --out first (only a dataset root with meta.json is ever deleted)"
    )
    clikit.add_no_progress(collect)


def _dry_run(args: argparse.Namespace) -> int:
    from automot.config import read_yaml_mapping
    from automot.model.config import PRESETS
    from automot.training.config import TrainConfig
    from automot.training.memory import format_estimate, memory_estimate, trainable_for

    cfg = (
        _with_overrides(TrainConfig.load_yaml(clikit.require_file(args.config, "--config")), args)
        if args.config
        else None
    )
    clikit.require(cfg is not None or not args.overrides, "--set: needs a --config to override")
    preset = args.preset or (cfg.model.preset if cfg else None)
    ckpt_config = Path(cfg.model.checkpoint) / "config.yaml" if cfg and cfg.model.checkpoint else None
    if not args.preset and ckpt_config is not None and ckpt_config.is_file():
        preset = read_yaml_mapping(ckpt_config, "model config").get("name", preset)  # the converted layout
    clikit.require(preset, "--dry-run needs --preset (or a --config whose model.preset is set)")
    clikit.require(preset in PRESETS, f"--preset {preset!r}: unknown (presets: {', '.join(PRESETS)})")
    clikit.require(args.world_size >= 1, f"--world-size: must be >= 1, got {args.world_size}")
    micro = args.micro_batch or (cfg.data.batch_size if cfg else 1)
    clikit.require(micro >= 1, f"--micro-batch: must be >= 1, got {micro}")
    est = memory_estimate(preset, args.world_size, micro, trainable_for(cfg.stages) if cfg else "all")
    print(json.dumps(est, indent=2) if args.json else format_estimate(est))
    return 0


def _train(args: argparse.Namespace) -> int:
    from automot.training.checkpoint import TRAIN_CONFIG, resolve_resume
    from automot.training.config import TrainConfig

    if args.dry_run:
        return _dry_run(args)

    clikit.require(args.config or args.resume, "--config is required (or --resume a checkpoint)")
    if args.config:
        config = clikit.require_file(args.config, "--config")
    else:
        try:
            config = resolve_resume(args.resume) / TRAIN_CONFIG
        except FileNotFoundError as exc:
            raise clikit.UsageError(str(exc)) from exc
        config = clikit.require_file(config, "--resume")
    cfg = _with_overrides(TrainConfig.load_yaml(config), args)  # ConfigError exits 2 through automot.cli
    if args.out:
        cfg.output_dir = args.out
    if args.no_progress:
        cfg.log.progress = False
    data_roots = [*cfg.data.train, *cfg.data.val]
    missing = [root for root in data_roots if not Path(root).exists()]
    clikit.require(not missing, f"data: dataset folder(s) not found: {', '.join(missing)}")
    if cfg.data.doctor:
        check_datasets(cfg)
    # The run folder must not be (inside) a dataset, a file, or -- for a fresh run -- a non-empty folder.
    clikit.prepare_out(
        cfg.output_dir,
        overwrite=args.overwrite or bool(args.resume),
        source=data_roots,
        what="--out" if args.out else "output_dir",
        create=False,  # the Trainer creates it once the data and model are known to be good
    )
    if args.overwrite and not args.resume:
        _refuse_mixing(Path(cfg.output_dir), "--out" if args.out else "output_dir")
    from automot.training.distributed import shutdown
    from automot.training.trainer import Trainer

    # Every user error (a missing / empty / malformed dataset, a bad checkpoint) is an AutoMoTError subclass
    # that automot.cli prints as one line; a --resume folder without checkpoints is mapped here.
    try:
        trainer = Trainer(cfg, resume=args.resume)
    except FileNotFoundError as exc:
        raise clikit.UsageError(str(exc)) from exc
    try:
        result = trainer.fit(max_steps=args.max_steps)
    finally:
        shutdown(trainer.info)
    if trainer.info.is_main:
        last = result["val_history"][-1] if result["val_history"] else {}
        final = str(result["final_dir"]) if result["final_dir"] else None
        print(json.dumps({"final_dir": final, "global_step": result["global_step"], **last}))
    return 0


def _with_overrides(cfg, args: argparse.Namespace):
    """``cfg`` with the ``--set KEY=VALUE`` overrides applied and validated like the file (ConfigError, exit 2)."""
    if not args.overrides:
        return cfg
    from automot.config import apply_overrides
    from automot.training.config import TrainConfig

    return TrainConfig.from_dict(apply_overrides(cfg.to_dict(), args.overrides), source="--set")


# What a training run writes into its folder (training/README.md): a new run there would mix with them.
RUN_FILES = ("train_config.yaml", "checkpoints", "final", "logs", "val_metrics.json")


def _refuse_mixing(out: Path, what: str) -> None:
    """UsageError when ``out`` holds an earlier training run: --overwrite would leave its final/ and checkpoints
    next to the new run's files, and append the new steps to its logs/scalars.jsonl (a kill would keep that mix)."""
    earlier = [name for name in RUN_FILES if (out / name).exists()]
    if earlier:
        raise clikit.UsageError(
            f"{what} {out}: holds an earlier training run ({', '.join(earlier)}); --overwrite would mix its files "
            "with the new run's: continue it with --resume, or remove it / choose another folder"
        )


def check_datasets(cfg) -> None:
    """`automot data doctor`'s fast checks on every dataset folder of ``cfg``; UsageError (exit 2: a bad input
    file, as the README's table says) when a folder has more than ``data.doctor_max_errors`` errors (the message
    names the first ones). `automot data doctor` itself, whose job is the check, exits 4."""
    from automot.errors import UsageError
    from automot.training.data.doctor import run_doctor

    d = cfg.data
    for root in dict.fromkeys([*d.train, *d.val]):
        report = run_doctor(root, d.format, fast=True, max_errors=d.doctor_max_errors, camera=d.camera)
        if not report.ok:
            first = "; ".join(
                f"{e['file']}{' [' + e['field'] + ']' if e['field'] else ''}: {e['message']}" for e in report.errors[:3]
            )
            raise UsageError(
                f"data: {root}: {report.error_count} errors in the start-up dataset check "
                f"(data.doctor_max_errors {d.doctor_max_errors}): {first}"
                + ("; ..." if report.error_count > 3 else "")
                + f"; run `automot data doctor {root}` for the full report (data.doctor: false skips this check)"
            )


def _collect(args: argparse.Namespace) -> int:
    from automot.training.collect import collect

    if args.routes == "all":
        from automot.world.routes import list_routes

        routes = list_routes()
    else:
        routes = clikit.split_list(args.routes, "--routes")
    size = args.image_size  # (width, height), checked at parse time
    opts = _collect_options(
        args,
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
        max_ticks=args.ticks,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    # --out: not a file, writable, and either new, empty, or a dataset to add episodes to (or --overwrite).
    from automot.training.data.automot_format import META

    clikit.prepare_out(args.out, args.overwrite, accept_existing=lambda p: (p / META).is_file())
    # UsageError (bad --routes, --episodes, ...) and DatasetError exit 2, RunFailed (every episode crashed; the
    # summary is written) exits 5, through automot.cli.
    summary = collect(opts)
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


# Set by their own options (--out is checked by prepare_out, --overwrite and --no-progress are how this run runs).
_COLLECT_COMMAND_LINE_ONLY = ("out", "overwrite", "progress")


def _collect_options(args: argparse.Namespace, **fields):
    """The CollectOptions of the command line, with ``--set KEY=VALUE`` applied and type-checked (exit 2)."""
    from automot import config as typed_config
    from automot.training.collect import CollectOptions

    opts = CollectOptions(**fields)
    if not args.overrides:
        return opts
    for item in args.overrides:
        key = item.partition("=")[0].strip()
        clikit.require(key not in _COLLECT_COMMAND_LINE_ONLY, f"--set {key}: set it with --{key.replace('_', '-')}")
    data = typed_config.apply_overrides(typed_config.to_dict(opts), args.overrides)
    return typed_config.from_dict(CollectOptions, data, source="--set")
