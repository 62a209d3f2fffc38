#!/usr/bin/env python
"""One-command acceptance run for a GPU box (issue #14 part 4): one JSON out, every missing piece a clear skip.

    scripts/gpu_acceptance.sh [--device cuda] [--preset automot-4b] [--dtype bf16] [--out acceptance.json]

No network: ``automot-4b`` is built with random weights in ``--dtype`` (nothing is downloaded). Measured:
- ``model.prefill_ms``: the slow path (prefill of one dummy observation), p50/p99;
- ``model.fast_step_ms.<engine>``: the fast step per engine: ``torch`` (eager), ``torch-compile`` (inductor with
  CUDA graphs, ``mode="reduce-overhead"``), ``tensorrt-fp16``, ``tensorrt-bf16``;
- ``model.tensorrt_parity.<precision>``: TensorRT against torch (max abs, cosine; ``runtime.export.validate_parity``);
- ``model.concurrency_ratio``: fast-step tick p99 with a refresh running on its own stream / idle (async runtime);
- ``model.peak_memory_gb``: ``torch.cuda.max_memory_allocated`` over the model section;
- ``bev_encoder``: the released BEV encoder (random weights, the released geometry; ``--bev tiny``: the test-sized
  one): ``encoder_ms`` per engine (torch, tensorrt-fp16), ``tensorrt_parity``, ``peak_memory_gb``.
Every item is a value or ``{"skipped": reason}`` (no CUDA, no TensorRT, time budget spent, ``--engines``) or
``{"error": message}``; ``skips`` lists them all. ``--time-budget-s`` (default 420 s) keeps the whole run within
8 minutes: sections that would start after it are skipped. Exit 0 when the JSON was written, 2 on bad arguments.
``--device cpu --preset tiny --bev tiny`` runs the same code on a CPU (the tests do that).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCHEMA = "automot-gpu-acceptance/1"
ENGINES = ("torch", "torch-compile", "tensorrt-fp16", "tensorrt-bf16")
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_acceptance", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default: cuda)")
    p.add_argument("--preset", default="automot-4b", help="model preset, random weights (default: automot-4b)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="model dtype (default: bf16)")
    p.add_argument("--bev", choices=("released", "tiny", "none"), default="released", help="BEV encoder to measure")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"fast-step engines (default: {','.join(ENGINES)})")
    p.add_argument("--iters", type=int, default=20, help="timed calls per item (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: 3)")
    p.add_argument("--time-budget-s", type=float, default=420.0, help="skip sections after this (default: 420)")
    # --json-out: a JSON file, as in `automot bench` (README, "One CLI vocabulary"); --out is the old name.
    p.add_argument(
        "--json-out", "--out", dest="out", default="acceptance.json", metavar="PATH",
        help="JSON output file (default: acceptance.json)",
    )  # fmt: skip
    args = p.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or not engines:
        p.error(f"--engines: unknown {unknown or 'empty list'}; choose from {', '.join(ENGINES)}")
    args.engines = engines
    if args.iters < 1 or args.warmup < 0:
        p.error("--iters must be >= 1 and --warmup >= 0")
    if not args.time_budget_s > 0:
        p.error("--time-budget-s must be > 0")
    if not (args.device == "cpu" or args.device == "cuda" or args.device.startswith("cuda:")):
        p.error(f"--device {args.device!r}: expected cpu, cuda or cuda:N")
    if Path(args.out).is_dir():
        p.error(f"--json-out {args.out}: is a folder, not a file name")
    return args


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Any, device: Any, iters: int, warmup: int) -> dict[str, float]:
    from automot.runtime.telemetry import summarize

    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) * 1e3)
    s = summarize(samples)
    return {"p50": round(s["p50"], 4), "p99": round(s["p99"], 4), "count": s["count"]}


def _item(name: str, skips: list[str], budget: _Budget, fn: Any, need_cuda: bool = False, cuda: bool = False) -> Any:
    """Run one measurement: its value, or a skip / error entry (recorded in ``skips``)."""
    if need_cuda and not cuda:
        reason = "needs a CUDA device (this run has none)"
    elif budget.left() <= 0:
        reason = f"time budget of {budget.seconds:g} s spent"
    else:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every item reports for itself
            from automot.runtime.engines import MissingDependencyError

            if isinstance(exc, MissingDependencyError):
                reason = str(exc).splitlines()[0]
            else:
                skips.append(f"{name}: error {type(exc).__name__}")
                return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    skips.append(f"{name}: {reason}")
    return {"skipped": reason}


def _peak(device: Any) -> Any:
    import torch

    if device.type != "cuda":
        return {"skipped": "CUDA only (torch.cuda.max_memory_allocated)"}
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from automot.model import build_model, make_dummy_inputs
    from automot.runtime.bench import _measure_runtime, device_description
    from automot.runtime.engines import TensorRTEngine, TorchEngine, require_tensorrt

    started = time.monotonic()
    budget = _Budget(args.time_budget_s)
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    device = torch.device(args.device if cuda else "cpu")
    skips: list[str] = []
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "args": {k: v for k, v in vars(args).items()},
        "device": device_description(device),
        "cuda": cuda,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "skips": skips,
    }
    if args.device.startswith("cuda") and not cuda:
        skips.append(f"--device {args.device}: torch sees no CUDA device; ran on the CPU")
    try:
        result["tensorrt"] = require_tensorrt().__version__
    except Exception as exc:  # noqa: BLE001
        result["tensorrt"] = {"skipped": str(exc).splitlines()[0]}
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    model = build_model(args.preset, device=str(device), dtype=DTYPES[args.dtype]).eval()
    cfg = model.config
    capacity = cfg.max_prefix_tokens
    obs, state = make_dummy_inputs(cfg, batch=1, seed=0)
    with torch.inference_mode():
        snap = model.prefill(obs, capacity=capacity)
    inputs = (snap.keys, snap.values, snap.pad_mask, snap.next_position, state.target_points, state.speed, state.scene)
    section: dict[str, Any] = {"preset": cfg.name, "dtype": args.dtype, "capacity": capacity}

    def prefill() -> None:
        with torch.inference_mode():
            model.prefill(obs, capacity=capacity)

    section["prefill_ms"] = _item("model.prefill_ms", skips, budget, lambda: _time(prefill, device, args.iters, 1))
    fast: dict[str, Any] = {}
    parity: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="automot-acceptance-") as tmp:
        onnx_path: list[Path] = []

        def onnx() -> Path:
            if not onnx_path:
                from automot.runtime.export import export_onnx

                onnx_path.append(export_onnx(model, Path(tmp) / "fast_step.onnx", capacity))
            return onnx_path[0]

        for engine in ENGINES:
            name = f"model.fast_step_ms.{engine}"
            if engine not in args.engines:
                fast[engine] = {"skipped": "not in --engines"}
                skips.append(f"{name}: not in --engines")
                continue
            if engine == "torch":
                eng = TorchEngine(model.fast_step_module(), device)
                fast[engine] = _item(
                    name, skips, budget, lambda e=eng: _time(lambda: e(*inputs), device, args.iters, args.warmup)
                )
            elif engine == "torch-compile":

                def compiled() -> dict[str, float]:
                    module = torch.compile(model.fast_step_module().eval(), mode="reduce-overhead", dynamic=False)

                    def call() -> None:
                        with torch.inference_mode():
                            module(*inputs)

                    return _time(call, device, args.iters, max(args.warmup, 3))

                fast[engine] = _item(name, skips, budget, compiled, need_cuda=True, cuda=cuda)
            else:
                precision = engine.split("-")[1]

                def trt(precision: str = precision) -> dict[str, float]:
                    from automot.runtime.export import build_trt_engine, validate_parity

                    require_tensorrt()
                    path = build_trt_engine(onnx(), Path(tmp) / f"fast_step.{precision}.engine", precision)
                    eng = TensorRTEngine(path, device)
                    try:
                        parity[precision] = validate_parity(model, eng, capacity, precision)
                        return _time(lambda: eng(*inputs), device, args.iters, args.warmup)
                    finally:
                        eng.close()

                fast[engine] = _item(name, skips, budget, trt, need_cuda=True, cuda=cuda)
                if precision not in parity:
                    parity[precision] = {"skipped": "no TensorRT engine was measured"}
    section["fast_step_ms"] = fast
    section["tensorrt_parity"] = parity

    def concurrency() -> dict[str, Any]:
        rt = _measure_runtime(model, "torch", None, capacity, ticks=max(10, args.iters), warmup=args.warmup)
        return {
            "value": round(rt["concurrent"]["p99"] / rt["idle"]["p99"], 3),
            "tick_p99_ms_idle": round(rt["idle"]["p99"], 4),
            "tick_p99_ms_concurrent": round(rt["concurrent"]["p99"], 4),
            "ci95": rt["p99_ratio_ci95"],
            "machine_noise": rt["machine_noise"],
        }

    section["concurrency_ratio"] = _item("model.concurrency_ratio", skips, budget, concurrency)
    section["peak_memory_gb"] = _peak(device)
    if not cuda:
        skips.append("model.peak_memory_gb: CUDA only")
    result["model"] = section
    result["bev_encoder"] = _bev(args, device, cuda, budget, skips)
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def _bev(args: argparse.Namespace, device: Any, cuda: bool, budget: _Budget, skips: list[str]) -> dict[str, Any]:
    import torch

    if args.bev == "none":
        skips.append("bev_encoder: --bev none")
        return {"skipped": "--bev none"}
    from automot.model.released.bev_config import BEVConfig
    from automot.model.released.bev_encoder import BEVEncoder
    from automot.model.released.synthetic import tiny_bev_config

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    bev_cfg = BEVConfig() if args.bev == "released" else tiny_bev_config()
    encoder = BEVEncoder(bev_cfg).to(device).eval()  # fp32, as the released encoder runs
    rgb = torch.rand(1, 3, bev_cfg.cropped_height, bev_cfg.cropped_width, device=device) * 255
    lidar = torch.rand(1, bev_cfg.lidar_in_channels, bev_cfg.lidar_resolution_height, bev_cfg.lidar_resolution_width)
    lidar = lidar.to(device)
    out: dict[str, Any] = {"config": args.bev, "rgb_shape": list(rgb.shape), "lidar_shape": list(lidar.shape)}

    def eager() -> dict[str, float]:
        def call() -> None:
            with torch.inference_mode():
                encoder(rgb, lidar)

        return _time(call, device, args.iters, args.warmup)

    out["encoder_ms"] = {"torch": _item("bev_encoder.encoder_ms.torch", skips, budget, eager)}

    parity: dict[str, Any] = {}

    def trt() -> dict[str, float]:
        from automot.runtime.engines import TensorRTSceneEngine, require_tensorrt
        from automot.runtime.export import build_trt_engine, export_bev_onnx, validate_bev_parity

        require_tensorrt()
        with tempfile.TemporaryDirectory(prefix="automot-acceptance-bev-") as tmp:
            onnx = export_bev_onnx(encoder, Path(tmp) / "bev_encoder.onnx")
            engine = TensorRTSceneEngine(build_trt_engine(onnx, Path(tmp) / "bev_encoder.fp16.engine", "fp16"), device)
            try:
                parity["fp16"] = validate_bev_parity(encoder, engine, "fp16")
                rgb_np, lidar_np = rgb.float().cpu().numpy(), lidar.float().cpu().numpy()
                return _time(lambda: engine(rgb_np, lidar_np), device, args.iters, args.warmup)
            finally:
                engine.close()

    out["encoder_ms"]["tensorrt-fp16"] = _item("bev_encoder.encoder_ms.tensorrt-fp16", skips, budget, trt, True, cuda)
    out["tensorrt_parity"] = parity or {"fp16": {"skipped": "no TensorRT engine was measured"}}
    out["peak_memory_gb"] = _peak(device)
    if not cuda:
        skips.append("bev_encoder.peak_memory_gb: CUDA only")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2, default=str)
    from automot.fsio import atomic_write_text

    atomic_write_text(args.out, text + "\n")
    for line in result["skips"]:
        print(f"[acceptance] skipped {line}", file=sys.stderr)
    print(f"[acceptance] wrote {args.out} ({result['wall_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
