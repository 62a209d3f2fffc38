"""``automot bench`` and ``automot export`` (registered into the ``automot`` console script by automot/cli.py).

Errors are raised and reported by automot.cli with the shared exit codes (`automot --help`): a bad preset, config
or checkpoint exits 2, a missing optional dependency (e.g. TensorRT) 3, an export that fails its parity check 4.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from automot import clikit
from automot.fsio import atomic_write_text

BENCH_BACKENDS = ("torch", "torch-compile", "onnxruntime", "tensorrt")
# --opset: the fast step is exported and parity-tested at 17 (the default). Below 14 torch's exporter cannot write
# its attention (aten::scaled_dot_product_attention, tried: 13 fails); 20 is the highest opset the TorchScript
# exporter (the default, without --dynamo) writes.
OPSET_MIN, OPSET_MAX = 14, 20


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` and ``export`` subcommands."""
    bench = clikit.add_command(
        subparsers,
        "bench",
        help="fast-path / runtime latency benchmark (JSON)",
        func=_cmd_bench,
        description="Measure full forward vs fast step per backend, and the async runtime, side by side.",
    )
    clikit.add_model_source(bench, preset_default="small", checkpoint_help="bench these weights instead of --preset")
    clikit.add_json(bench, "print the result as JSON on stdout (default: the headline numbers as text)")
    clikit.add_json_out(bench, "also write the JSON result to this file (checked before the benchmark runs)")
    bench.add_argument("--iters", type=clikit.integer(1), default=30, help="measurement rounds, >= 1 (default: 30)")
    bench.add_argument("--warmup", type=clikit.integer(0), default=5, help="warm-up rounds, >= 0 (default: 5)")
    bench.add_argument(
        "--runtime-ticks",
        type=clikit.integer(1),
        default=1000,
        metavar="N",
        help="concurrency_ratio: fast-path ticks on an idle worker and as many next to whole refreshes, >= 1 "
        "(default: %(default)s; a p99 over fewer is a handful of ticks)",
    )
    bench.add_argument(
        "--backends",
        default="torch,onnxruntime",
        help=f"comma-separated fast-step backends: {', '.join(BENCH_BACKENDS)} (default: %(default)s)",
    )
    bench.add_argument("--runtime-engine", default=None, help="engine of the async runtime (default: onnxruntime)")
    bench.add_argument(
        "--threads", type=clikit.integer(1), default=None, help="threads for the side-by-side backend comparison"
    )
    clikit.add_device(bench, "cpu | cuda | cuda:N (e.g. automot-4b on a GPU)")
    bench.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: the model's)")
    bench.add_argument(
        "--agent-ticks",
        type=clikit.integer(0),
        default=60,
        metavar="N",
        help="agent_tick: driving ticks per embedded-world run of the whole agent (demo model and the small preset, "
        "recorder on and off); 0 skips it (default: %(default)s)",
    )

    export = clikit.add_command(
        subparsers,
        "export",
        help="export the fast step to ONNX / TensorRT and validate it against torch",
        func=_cmd_export,
        description="Export the action-expert fast step with a fixed-capacity padded KV snapshot plus pad mask; "
        "writes fast_step.onnx (and a TensorRT engine), bev_encoder.onnx (+ engine) when the model has a BEV encoder, "
        "and parity.json into --out. Exits 4 when an exported engine fails the parity check.",
    )
    clikit.add_model_source(export, required=True, preset_help="model preset (random weights): tiny, small, automot-4b")
    export.add_argument("--backend", choices=("onnx", "tensorrt"), default="onnx")
    clikit.add_out(export, "output directory", required=True)
    clikit.add_overwrite(export, "export into an existing, non-empty --out, replacing the files an export writes")
    export.add_argument(
        "--capacity", type=clikit.integer(1), default=None, help="KV capacity, >= 1 (default: config.max_prefix_tokens)"
    )
    export.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp16", help="TensorRT precision")
    export.add_argument(
        "--opset",
        type=clikit.integer(OPSET_MIN, OPSET_MAX),
        default=17,
        help=f"ONNX opset, {OPSET_MIN}..{OPSET_MAX} (default: %(default)s)",
    )
    export.add_argument("--dynamo", action="store_true", help="use the torch.export-based ONNX exporter")
    clikit.add_device(export, "device to load the model on (tensorrt moves it to cuda)")


def _cmd_bench(args: argparse.Namespace) -> int:
    from automot.outputs import check_device, check_output_file
    from automot.runtime.bench import run_bench

    check_device(args.device)  # no CUDA: exit 3 before a model is built

    backends = clikit.split_list(args.backends, "--backends", BENCH_BACKENDS)
    if args.json_out:  # checked before the (long) benchmark runs
        check_output_file(args.json_out, inputs=[args.checkpoint], what="--json-out")  # a folder, unwritable: exit 2
    # ConfigError (bad preset / YAML) and ExportError (bad checkpoint) exit 2 through automot.cli.
    result = run_bench(
        args.preset,
        args.iters,
        args.warmup,
        backends,
        args.runtime_engine,
        args.threads,
        device=args.device,
        dtype=args.dtype,
        checkpoint=args.checkpoint,
        agent_ticks=args.agent_ticks,
        runtime_ticks=args.runtime_ticks,
    )
    text = json.dumps(result, indent=2)
    if args.json_out:
        atomic_write_text(args.json_out, text + "\n")
    for name, t in result["targets"].items():
        print(
            f"[bench] target {name}: {t['value']} (target {t['target']}) -> {'MET' if t['met'] else 'NOT MET'}",
            file=sys.stderr,
        )
    noise = result["machine_noise"]
    print(
        f"[bench] machine {'quiet' if noise['quiet'] else 'NOISY'}: idle tick p95/p50 "
        f"{noise['idle_tick_p95_over_p50']} (quiet <= {noise['quiet_limit']:g})"
        + ("" if noise["quiet"] else "; the concurrency ratio is not comparable with a quiet run's"),
        file=sys.stderr,
    )
    if args.json:
        print(text)
    else:
        _print_headline(result)
    return 0


def _print_headline(result: dict) -> None:
    """The benchmark's scalar results as ``key: value`` lines (the whole document: ``--json``)."""
    for key, value in result.items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            print(f"{key}: {value}")
        elif key == "fast_step_ms" and isinstance(value, dict):
            for backend, ms in value.items():
                print(f"fast_step_ms.{backend}: {ms}")


def _cmd_export(args: argparse.Namespace) -> int:
    from automot.outputs import check_device
    from automot.runtime.export import export, load_model

    check_device(args.device)  # no CUDA: exit 3 before a model is loaded

    # MissingDependencyError exits 3, ExportError / ConfigError 2 (through automot.cli).
    if args.backend == "tensorrt":
        from automot.runtime.engines import require_tensorrt

        require_tensorrt()  # before loading a possibly large model
    # Before loading anything: --out must not be a file, unwritable, the checkpoint (or inside it), or a non-empty
    # folder without --overwrite. Files are staged and moved into --out only when the export is complete.
    clikit.prepare_out(args.out, args.overwrite, source=args.checkpoint)
    from automot.fsio import remove_temp_dirs

    remove_temp_dirs(args.out)  # staging folders (.staged.XXXX.tmp) a killed run on this --out left behind
    model = load_model(args.preset, args.checkpoint, device=args.device)
    source = f"preset:{args.preset}" if args.preset else f"checkpoint:{args.checkpoint}"
    print(f"[export] {source} -> {args.out} ({args.backend})", file=sys.stderr, flush=True)
    summary = export(
        model, args.backend, args.out, args.capacity, args.precision, args.opset, args.dynamo, source=source
    )
    parity = Path(args.out) / "parity.json"
    verdict = "passed" if summary["passed"] else "FAILED"
    print(
        f"[export] parity {verdict}: max_abs={summary['max_abs']:.3g} cosine_min={summary['cosine_min']:.6f} -> {parity}",
        file=sys.stderr,
    )
    bev = summary.get("bev_encoder")
    if bev is not None:
        print(
            f"[export] BEV encoder {tuple(bev['output_shape'])}: parity {'passed' if bev['passed'] else 'FAILED'}: "
            f"max_abs={bev['max_abs']:.3g} cosine_min={bev['cosine_min']:.6f}",
            file=sys.stderr,
        )
    print(json.dumps({k: summary[k] for k in ("files", "passed", "max_abs", "cosine_min", "capacity")}))
    if not summary["passed"]:
        raise clikit.CheckFailed(
            f"exported {args.backend} engine failed the parity check against torch "
            f"(max_abs={summary['max_abs']:.3g}, cosine_min={summary['cosine_min']:.6f}; see {parity})"
        )
    return 0
