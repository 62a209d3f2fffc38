"""``automot bench``: side-by-side latency of the full forward, the fast step per backend, and the async runtime.

Everything is measured in one process, after warm-up, interleaved round-robin so that machine noise (other jobs,
frequency changes) hits every candidate alike. Medians for per-call costs, p99 for tick latency.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automot.runtime.config import available_cores
from automot.runtime.contention import machine_noise, p99_ratio_interval, sample_cycles, timed_ms
from automot.runtime.engines import (
    MissingDependencyError,
    OnnxRuntimeEngine,
    TensorRTEngine,
    TorchCompileEngine,
    TorchEngine,
    require_tensorrt,
    require_trt_device,
)
from automot.runtime.export import build_trt_engine, export_onnx, validate_parity
from automot.runtime.runtime import build_runtime
from automot.runtime.telemetry import summarize
from automot.runtime.types import DrivingObservation, DrivingState

TARGETS = {
    "fast_step_speedup": (">=", 10.0),
    "concurrency_ratio": ("<=", 1.5),
    "runtime_overhead": ("<=", 0.05),
    "onnx_parity_max_abs": ("<=", 1e-4),
}


_T0 = time.perf_counter()


def _progress(msg: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {available_cores()} cores, torch {torch.__version__}"


def _fast_engines(model: Any, names: list[str], onnx_path: Path | None, threads: int, workdir: Path) -> dict:
    device = next(model.parameters()).device
    engines: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            if name == "torch":
                engines[name] = TorchEngine(model.fast_step_module(), device)
            elif name == "torch-compile":
                engines[name] = TorchCompileEngine(model.fast_step_module(), device)
            elif name == "onnxruntime":
                assert onnx_path is not None
                engines[name] = OnnxRuntimeEngine(onnx_path, threads=threads, device=device)
            elif name == "tensorrt":
                require_tensorrt()
                require_trt_device(device)  # skip before a minutes-long engine build, not after
                assert onnx_path is not None
                engines[name] = TensorRTEngine(build_trt_engine(onnx_path, workdir / "fast.engine"), device=device)
            else:
                raise ValueError(f"unknown backend {name!r}")
        except (MissingDependencyError, RuntimeError) as exc:
            skipped[name] = str(exc)
            _progress(f"backend {name} skipped: {exc}")
    return {"engines": engines, "skipped": skipped}


def _driving_inputs(config: Any, seed: int = 0) -> tuple[DrivingObservation, DrivingState]:
    rng = np.random.default_rng(seed)
    p = config.prompt
    images = [rng.integers(0, 255, (p.image_height, p.image_width, 3), dtype=np.uint8) for _ in range(p.num_frames)]
    tps = np.array([[8.0, 0.5], [20.0, 2.0]], np.float32)
    scene = None
    if config.tokens.num_scene_tokens:
        scene = rng.standard_normal((config.tokens.num_scene_tokens, config.tokens.scene_dim)).astype(np.float32)
    return DrivingObservation(images, tps, 4.0), DrivingState(tps, 4.0, scene)


def _measure_runtime(model: Any, engine: str, onnx_path: Path | None, capacity: int, ticks: int, warmup: int) -> dict:
    """Async runtime: idle ticks vs ticks with a refresh in flight (whole refreshes, runtime/contention.py), and
    runtime overhead over the bare engine."""
    obs, state = _driving_inputs(model.config)
    opts: dict[str, Any] = dict(max_snapshot_age_s=None, max_snapshot_age_ticks=None, capacity=capacity)
    if engine == "onnxruntime":
        opts["engine_file"] = str(onnx_path)
    with build_runtime(model, mode="async", engine=engine, **opts) as rt:
        rt.submit(obs, 0.0, 0)
        rt.wait_idle(timeout=300)
        if rt.error is not None:
            raise RuntimeError(f"slow path failed during the benchmark: {rt.error!r}")
        action = model.build_state(state.target_points, state.speed, state.scene)
        frame = [0]

        def tick() -> None:
            frame[0] += 1
            rt.step(state, frame[0] * 0.05, frame[0])

        def bare() -> None:
            with rt.store.read() as view:
                assert view is not None
                rt.engine(
                    view.keys,
                    view.values,
                    view.pad_mask,
                    view.next_position,
                    action.target_points,
                    action.speed,
                    action.scene,
                )

        for _ in range(warmup):
            tick()
            bare()
        _progress(
            f"runtime ({engine}, async, fast threads {rt.threads_fast}, slow {rt.threads_slow}): "
            f"{ticks} idle ticks and {ticks} ticks next to whole refreshes, alternating"
        )
        cycles = sample_cycles(
            tick,
            bare,
            start_refresh=lambda: rt.submit(obs, frame[0] * 0.05, frame[0]),
            refreshing=lambda: rt.refresh_in_progress,
            wait_idle=lambda: rt.wait_idle(timeout=300),
            ticks=ticks,
            deadline_s=max(120.0, ticks * 2.0),
            failed=lambda: rt.error is not None,
        )
        if rt.error is not None:
            raise RuntimeError(f"slow path failed during the benchmark: {rt.error!r}")
        stats = rt.stats()
    interval = p99_ratio_interval(cycles)
    idle = [ms for c in cycles for ms in c.idle_ms]
    busy = [ms for c in cycles for ms in c.busy_ms]
    return {
        "engine": engine,
        "threads": stats["threads"],
        "idle": summarize(idle),
        "concurrent": summarize(busy),
        "bare": summarize([ms for c in cycles for ms in c.bare_ms]),
        "cycles": len(cycles),
        "p99_ratio_ci95": None if interval is None else [round(v, 3) for v in interval],
        "mean_ratio": round(float(np.mean(busy) / np.mean(idle)), 3) if idle and busy else None,
        "machine_noise": machine_noise(cycles),
        "refresh_ms": stats["refresh_ms"],
        "refreshes": stats["refreshes"],
    }


def pipeline_latency_ticks(refresh_ms: float, tick_s: float = 0.05) -> int:
    """K for the pipelined mode from a measured refresh time: ceil(refresh / tick), at least 1 (120 ms at 20 Hz: 3)."""
    return max(1, int(np.ceil(round(refresh_ms / 1e3 / tick_s, 6))))


def _measure_cadence(
    model: Any, engine: str, onnx_path: Path | None, capacity: int, ticks: int, latency_ticks: int = 1
) -> dict:
    """What the simulator waits for per agent tick: the released cadence (UE refresh every 2nd tick in the
    calling thread, eager action step) versus ours (async refresh in the background, compiled action step) and the
    reproducible pipelined schedule (refresh every 2nd tick, published ``latency_ticks`` later, compiled step)."""
    obs, state = _driving_inputs(model.config)
    base: dict[str, Any] = dict(max_snapshot_age_s=None, max_snapshot_age_ticks=None, capacity=capacity)
    engine_file = {"engine_file": str(onnx_path)} if onnx_path else {}
    setups = {
        "released_sync2_eager": dict(mode="sync", sync_every=2, engine="torch"),
        f"async_{engine}": dict(mode="async", engine=engine, **engine_file),
        f"pipelined_{engine}": dict(
            mode="pipelined", refresh_every=2, latency_ticks=latency_ticks, engine=engine, **engine_file
        ),
    }

    def in_step(rt: Any) -> int:  # released (sync): the refresh of frame 0 runs inside the first timed step
        return 1

    def first_snapshot(rt: Any) -> int:  # async: the background refresh of frame 0 published before timing
        rt.wait_idle(timeout=300)
        return 1

    def first_publication(rt: Any) -> int:  # pipelined: run the schedule until its first publication (frame K)
        rt.step(state, 0.0, 0)
        for frame in range(1, latency_ticks + 1):
            rt.submit(obs, frame * 0.05, frame)
            rt.step(state, frame * 0.05, frame)
        return latency_ticks + 1

    warm_ups = {
        "released_sync2_eager": in_step,
        f"async_{engine}": first_snapshot,
        f"pipelined_{engine}": first_publication,
    }
    out: dict[str, Any] = {}
    for name, opts in setups.items():
        samples: list[float] = []
        with build_runtime(model, **base, **opts) as rt:
            rt.submit(obs, 0.0, 0)  # a first snapshot, as after the agent's warm-up
            start = warm_ups[name](rt)
            for frame in range(start, start + ticks):
                t0 = time.perf_counter()
                rt.submit(obs, frame * 0.05, frame)
                rt.step(state, frame * 0.05, frame)
                samples.append((time.perf_counter() - t0) * 1e3)
            stats = rt.stats()
        out[name] = summarize(samples)
        if stats.get("pipeline") is not None:  # the pipelined scheduler's own counters
            pipe = stats["pipeline"]
            out["pipelined_schedule"] = {**pipe, "pipeline_wait_ms": stats["pipeline_wait_ms"]}
    names = list(setups)
    out["tick_speedup"] = round(out[names[0]]["mean"] / out[names[1]]["mean"], 3)
    return out


def run_bench(
    preset: str = "small",
    iters: int = 30,
    warmup: int = 5,
    backends: list[str] | None = None,
    runtime_engine: str | None = None,
    threads: int | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    checkpoint: str | None = None,
    agent_ticks: int = 0,
    runtime_ticks: int = 1000,
) -> dict[str, Any]:
    """Run the whole benchmark and return the contract dict (see module docstring of runtime.cli).

    Torch's intra-op thread count is set to ``threads`` (default: the available cores) while it runs and put
    back to the caller's value afterwards, also when the benchmark fails.
    """
    threads = threads or available_cores()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = _run_bench(
            preset, iters, warmup, backends, runtime_engine, threads, device, dtype, checkpoint, runtime_ticks
        )
    finally:
        if torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)
    if isinstance(result, dict) and "preset" in result:
        result["agent_tick"] = measure_agent_tick_entry(agent_ticks, device)
    return result


def measure_agent_tick_entry(ticks: int, device: str = "cpu") -> dict[str, Any] | None:
    """``agent_tick``: the whole agent tick in the embedded world (world/tick_bench.py), async runtime with the ONNX
    Runtime fast step, for the demo model and the ``small`` preset, recorder (video) on and off. The top-level
    fields are the ``small`` run with the recorder on; ``runs`` holds all four. None when ``ticks`` is 0."""
    if ticks <= 0:
        return None
    from automot.world.cli import DEFAULT_CONFIG, REPO_ROOT
    from automot.world.tick_bench import measure_agent_tick

    config = str(REPO_ROOT / DEFAULT_CONFIG)
    # No snapshot age limit: a loaded machine's slow path may fall behind, and the bench times the fast step on
    # every tick instead of safe stops.
    common = [
        "runtime.mode=async",
        "runtime.engine=onnxruntime",
        f"model.device={device}",
        "runtime.max_snapshot_age_s=1000000",
        "runtime.options.max_snapshot_age_ticks=null",
    ]
    models = {"demo": [], "small": ["model.checkpoint=null", "model.preset=small"]}
    runs: dict[str, Any] = {}
    for name, sets in models.items():
        for recorder in (True, False):
            key = f"{name}_recorder_{'on' if recorder else 'off'}"
            _progress(f"agent tick: {key}, {ticks} driving ticks in the embedded world")
            runs[key] = measure_agent_tick(config, [*common, *sets], ticks=ticks, recorder=recorder)
    head = runs["small_recorder_on"]
    return {
        **{k: head[k] for k in ("p99_ms", "fast_step_p99_ms", "ratio_p99", "stages")},
        "target_ratio_p99": "<= 1.5 (small, recorder on)",
        "runs": runs,
        "loadavg_1min": _loadavg(),
    }


def _run_bench(
    preset: str,
    iters: int,
    warmup: int,
    backends: list[str] | None,
    runtime_engine: str | None,
    threads: int,
    device: str,
    dtype: str | None,
    checkpoint: str | None,
    runtime_ticks: int,
) -> dict[str, Any]:
    from automot.model import build_model, make_dummy_inputs

    backends = backends or ["torch", "onnxruntime"]
    if "torch" not in backends:
        backends = ["torch", *backends]  # the speedup is defined against eager torch
    load_before = _loadavg()
    if checkpoint:
        from automot.runtime.export import load_model

        _progress(f"loading {checkpoint}")
        model = load_model(checkpoint=checkpoint, device=device)
        if dtype is not None:
            from automot.model.factory import resolve_dtype
            from automot.model.rope import keep_rotary_fp32

            model = model.to(resolve_dtype(dtype))
            keep_rotary_fp32(model)
        preset = model.config.name
    else:
        _progress(f"building {preset!r} on {device}")
        model = build_model(preset, device=device, dtype=dtype)
    cfg = model.config
    capacity = cfg.max_prefix_tokens
    device = next(model.parameters()).device
    obs, state = make_dummy_inputs(cfg, batch=1, seed=0)
    with tempfile.TemporaryDirectory(prefix="automot-bench-") as tmp:
        workdir = Path(tmp)
        onnx_path = None
        if {"onnxruntime", "tensorrt"} & set(backends) or runtime_engine == "onnxruntime":
            _progress("exporting the fast step to ONNX")
            onnx_path = export_onnx(model, workdir / "fast_step.onnx", capacity)
        made = _fast_engines(model, backends, onnx_path, threads, workdir)
        engines = made["engines"]
        parity = None
        if "onnxruntime" in engines:
            parity = validate_parity(model, engines["onnxruntime"], capacity)["max_abs"]

        with torch.inference_mode():
            snap = model.prefill(obs, capacity=capacity)
        inputs = (snap.keys, snap.values, snap.pad_mask, snap.next_position, state.target_points, state.speed)
        inputs = (*inputs, state.scene)

        def full() -> None:
            model.act(model.prefill(obs, capacity=capacity), state)

        from automot.model.refiner import ActionRefiner, RefinerConfig

        # An untrained refiner costs what a trained one costs: enough for its latency.
        refiner = ActionRefiner(RefinerConfig(cond_dim=cfg.action.hidden_size)).to(device).eval()

        def torch_refined() -> None:
            with torch.inference_mode():
                path, waypoints, _, hidden = model.action_heads(*inputs)
                refiner.sample(path, waypoints, hidden)

        calls: dict[str, Callable[[], object]] = {"full_forward": full}
        calls.update({name: (lambda e=e: e(*inputs)) for name, e in engines.items()})
        calls["torch+refiner"] = torch_refined
        from automot.model import mot

        def torch_attention_form(split: bool) -> None:
            # The eager step with the prefix K/V concatenated to the action K/V in every layer (split=False), or
            # attending over the two parts with a log-sum-exp merge (split=True); model/mot.py
            previous, mot.SPLIT_PREFIX_ATTENTION = mot.SPLIT_PREFIX_ATTENTION, split
            try:
                engines["torch"](*inputs)
            finally:
                mot.SPLIT_PREFIX_ATTENTION = previous

        calls["torch_concat_reference"] = lambda: torch_attention_form(False)
        calls["torch_two_part"] = lambda: torch_attention_form(True)
        _progress(f"warm-up ({warmup} rounds; first torch-compile call compiles)")
        for _ in range(warmup):
            for fn in calls.values():
                fn()
        _progress(f"measuring {list(calls)} side by side, {iters} rounds, {threads} threads")
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(iters):
            for name, fn in calls.items():
                # Fast steps are cheap: several per round tighten their median at no real cost.
                for _ in range(1 if name == "full_forward" else 5):
                    samples[name].append(timed_ms(fn))
        per_call = {name: summarize(v)["p50"] for name, v in samples.items()}

        runtime_engine = runtime_engine or ("onnxruntime" if "onnxruntime" in engines else "torch")
        rt = _measure_runtime(model, runtime_engine, onnx_path, capacity, ticks=runtime_ticks, warmup=warmup)
        _progress("agent-tick cost: released cadence (sync every 2, eager) vs async with the compiled fast step")
        # K as a deployment would choose it from this machine's refresh time at 20 Hz (runtime/README.md)
        latency_ticks = pipeline_latency_ticks(per_call["full_forward"])
        cadence = _measure_cadence(
            model,
            runtime_engine,
            onnx_path if runtime_engine == "onnxruntime" else None,
            capacity,
            max(10, iters),
            latency_ticks,
        )

    fast = {name: round(per_call[name], 4) for name in engines}
    fast["torch_concat_reference"] = round(per_call["torch_concat_reference"], 4)
    fast["torch_two_part"] = round(per_call["torch_two_part"], 4)
    result: dict[str, Any] = {
        "preset": preset,
        "full_forward_ms": round(per_call["full_forward"], 4),
        "fast_step_ms": fast,
        "fast_step_speedup": round(per_call["full_forward"] / per_call["torch"], 3),
        "tick_p99_ms_idle": round(rt["idle"]["p99"], 4),
        "tick_p99_ms_concurrent": round(rt["concurrent"]["p99"], 4),
        "concurrency_ratio": round(rt["concurrent"]["p99"] / rt["idle"]["p99"], 3),
        # Its 95 % interval, resampling whole refresh cycles, and the ratio of the means (runtime/contention.py).
        "concurrency_ratio_ci95": rt["p99_ratio_ci95"],
        "concurrency_ratio_mean": rt["mean_ratio"],
        # Whether the machine was quiet while the ratio was measured (the spread of the idle ticks).
        "machine_noise": rt["machine_noise"],
        "runtime_overhead": round(rt["idle"]["p50"] / rt["bare"]["p50"] - 1.0, 4),
        "onnx_parity_max_abs": parity,
        # The optional trajectory refiner (model/refiner.py), measured on eager torch next to the plain step.
        "refiner_extra_ms": round(per_call["torch+refiner"] - per_call["torch"], 4),
        # Mean wall time per agent tick (submit + step), released cadence vs ours, and their quotient.
        "cadence": cadence,
        "device": device_description(device),
        "details": {
            "capacity": capacity,
            "threads_side_by_side": threads,
            "iters": iters,
            "warmup": warmup,
            "skipped_backends": made["skipped"],
            # Other processes on the machine distort every number above; the 1-minute load says how much.
            "loadavg_1min": {"start": load_before, "end": _loadavg()},
            "runtime": rt,
            "fast_step_p99_ms": {name: round(summarize(samples[name])["p99"], 4) for name in engines},
        },
    }
    result["targets"] = check_targets(result)
    return result


def check_targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each contract target with its value and whether it is met (None value -> not met)."""
    out = {}
    for key, (op, bound) in TARGETS.items():
        value = result.get(key)
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        out[key] = {"value": value, "target": f"{op} {bound:g}", "met": bool(met)}
    fast = result["fast_step_ms"]
    if "onnxruntime" in fast:
        value = fast["onnxruntime"] / fast["torch"]
        out["onnxruntime_vs_torch"] = {"value": round(value, 3), "target": "<= 1", "met": bool(value <= 1.0)}
    return out
