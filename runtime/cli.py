"""``automot bench`` and ``automot export`` (registered into the ``automot`` console script by automot/cli.py).

Exit codes: 0 ok; 1 user error (unknown preset, missing checkpoint, bad option); 3 optional dependency missing
(e.g. TensorRT); 4 exported engine failed the parity check against torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_USER_ERROR = 1
EXIT_MISSING_DEPENDENCY = 3
EXIT_PARITY_FAILED = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` and ``export`` subcommands."""
    bench = subparsers.add_parser(
        "bench",
        help="fast-path / runtime latency benchmark (JSON)",
        description="Measure full forward vs fast step per backend, and the async runtime, side by side.",
    )
    bench.add_argument("--preset", default="small", help="model preset (default: small)")
    bench.add_argument("--json", dest="json_out", metavar="OUT.json", help="also write the result here")
    bench.add_argument("--iters", type=int, default=30, help="measurement rounds (default: 30)")
    bench.add_argument("--warmup", type=int, default=5, help="warm-up rounds (default: 5)")
    bench.add_argument(
        "--backends",
        default="torch,onnxruntime",
        help="comma-separated fast-step backends: torch, torch-compile, onnxruntime, tensorrt (default: %(default)s)",
    )
    bench.add_argument("--runtime-engine", default=None, help="engine of the async runtime (default: onnxruntime)")
    bench.add_argument("--threads", type=int, default=None, help="threads for the side-by-side backend comparison")
    bench.add_argument("--checkpoint", default=None, metavar="DIR", help="bench these weights instead of --preset")
    bench.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (e.g. automot-4b on a GPU)")
    bench.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: the model's)")
    bench.set_defaults(func=_cmd_bench)

    export = subparsers.add_parser(
        "export",
        help="export the fast step to ONNX / TensorRT and validate it against torch",
        description="Export the action-expert fast step with a fixed-capacity padded KV snapshot plus pad mask; "
        "writes fast_step.onnx (and a TensorRT engine), bev_encoder.onnx (+ engine) when the model has a BEV encoder, "
        "and parity.json into --out.",
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="model preset (random weights)")
    source.add_argument("--checkpoint", metavar="DIR", help="directory with model.safetensors + config.yaml")
    export.add_argument("--backend", choices=("onnx", "tensorrt"), default="onnx")
    export.add_argument("--out", required=True, metavar="DIR", help="output directory")
    export.add_argument("--capacity", type=int, default=None, help="KV capacity (default: config.max_prefix_tokens)")
    export.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp16", help="TensorRT precision")
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--dynamo", action="store_true", help="use the torch.export-based ONNX exporter")
    export.add_argument("--device", default="cpu", help="device to load the model on (tensorrt moves it to cuda)")
    export.set_defaults(func=_cmd_export)


def _err(msg: str) -> None:
    print(f"automot: error: {msg}", file=sys.stderr, flush=True)


def _cmd_bench(args: argparse.Namespace) -> int:
    from automot.runtime.bench import run_bench

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - {"torch", "torch-compile", "onnxruntime", "tensorrt"})
    if unknown:
        _err(f"unknown backend(s) {unknown}; choose from torch, torch-compile, onnxruntime, tensorrt")
        return EXIT_USER_ERROR
    if args.iters < 1 or args.warmup < 0:
        _err("--iters must be >= 1 and --warmup >= 0")
        return EXIT_USER_ERROR
    try:
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
        )
    except Exception as exc:
        from automot.model import ConfigError

        if isinstance(exc, ConfigError):
            _err(str(exc))
            return EXIT_USER_ERROR
        raise
    text = json.dumps(result, indent=2)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text + "\n")
    for name, t in result["targets"].items():
        print(
            f"[bench] target {name}: {t['value']} (target {t['target']}) -> {'MET' if t['met'] else 'NOT MET'}",
            file=sys.stderr,
        )
    print(text)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from automot.runtime.engines import MissingDependencyError
    from automot.runtime.export import ExportError, export, load_model

    try:
        if args.backend == "tensorrt":
            from automot.runtime.engines import require_tensorrt

            require_tensorrt()  # before loading a possibly large model
        model = load_model(args.preset, args.checkpoint, device=args.device)
        source = f"preset:{args.preset}" if args.preset else f"checkpoint:{args.checkpoint}"
        print(f"[export] {source} -> {args.out} ({args.backend})", file=sys.stderr, flush=True)
        summary = export(
            model, args.backend, args.out, args.capacity, args.precision, args.opset, args.dynamo, source=source
        )
    except MissingDependencyError as exc:
        _err(str(exc))
        return EXIT_MISSING_DEPENDENCY
    except ExportError as exc:
        _err(str(exc))
        return EXIT_USER_ERROR
    except Exception as exc:
        from automot.model import ConfigError

        if isinstance(exc, ConfigError):
            _err(str(exc))
            return EXIT_USER_ERROR
        raise
    verdict = "passed" if summary["passed"] else "FAILED"
    print(
        f"[export] parity {verdict}: max_abs={summary['max_abs']:.3g} cosine_min={summary['cosine_min']:.6f} "
        f"-> {Path(args.out) / 'parity.json'}",
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
    return 0 if summary["passed"] else EXIT_PARITY_FAILED
