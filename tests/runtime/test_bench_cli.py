"""``automot bench`` writes the contract JSON (keys and types only: timings are never asserted in unit tests)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from automot.cli import main
from automot.runtime.bench import check_targets

CONTRACT_KEYS = {
    "full_forward_ms",
    "fast_step_ms",
    "fast_step_speedup",
    "tick_p99_ms_idle",
    "tick_p99_ms_concurrent",
    "concurrency_ratio",
    "runtime_overhead",
    "onnx_parity_max_abs",
    "refiner_extra_ms",
    "cadence",
    "device",
}


def test_bench_tiny_writes_every_contract_key(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "automot.cli", "bench", "--preset", "tiny", "--iters", "2", "--warmup", "1"]
    cmd += ["--agent-ticks", "0"]  # the whole-agent runs have their own test (tests/world/test_tick_bench.py)
    cmd += ["--runtime-ticks", "60"]
    proc = subprocess.run([*cmd, "--json", "--json-out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result  # the same JSON is printed to stdout
    assert CONTRACT_KEYS <= set(result)
    assert set(result["fast_step_ms"]) == {"torch", "onnxruntime", "torch_concat_reference", "torch_two_part"}
    assert result["agent_tick"] is None
    assert set(result["cadence"]["pipelined_onnxruntime"]) == set(result["cadence"]["released_sync2_eager"])
    numbers = [result[k] for k in CONTRACT_KEYS - {"fast_step_ms", "device", "cadence"}]
    numbers += list(result["fast_step_ms"].values())
    assert all(isinstance(v, float) and math.isfinite(v) for v in numbers)
    assert min(result["fast_step_ms"].values()) > 0 and result["full_forward_ms"] > 0 and result["device"]
    # The ratio is computed from unrounded timings; the printed ones carry 4 decimals, so allow that rounding.
    ratio = result["full_forward_ms"] / result["fast_step_ms"]["torch"]
    assert result["fast_step_speedup"] == pytest.approx(ratio, rel=1e-3, abs=2e-3)
    cadence = result["cadence"]
    released, ours, pipelined = (k for k in cadence if k not in ("tick_speedup", "pipelined_schedule"))
    assert released == "released_sync2_eager" and ours.startswith("async_") and pipelined == "pipelined_onnxruntime"
    assert cadence["pipelined_schedule"]["deadline_misses"] == 0
    assert cadence["tick_speedup"] == pytest.approx(
        cadence[released]["mean"] / cadence[ours]["mean"], rel=1e-3, abs=2e-3
    )
    assert result["onnx_parity_max_abs"] <= 1e-4  # a correctness check, not a timing
    runtime = result["details"]["runtime"]
    assert runtime["concurrent"]["count"] == runtime["idle"]["count"] == 60  # --runtime-ticks per side
    assert runtime["cycles"] >= 1 and result["concurrency_ratio_mean"] > 0
    interval = result["concurrency_ratio_ci95"]  # None only with a single refresh cycle
    noise = result["machine_noise"]
    assert noise == runtime["machine_noise"] and noise["idle_tick_p95_over_p50"] >= 1.0  # p95 is never below p50
    assert noise["quiet"] == (noise["idle_tick_p95_over_p50"] <= noise["quiet_limit"])
    assert "[bench] machine " in proc.stderr
    assert interval is None or (len(interval) == 2 and interval[0] <= interval[1])
    assert set(result["targets"]) >= {
        "fast_step_speedup",
        "concurrency_ratio",
        "runtime_overhead",
        "onnx_parity_max_abs",
    }
    assert "MET" in proc.stderr and "[bench]" in proc.stderr  # progress and verdicts go to stderr


def test_bench_rejects_unknown_backend(capsys):
    assert main(["bench", "--preset", "tiny", "--backends", "torch,tflite"]) == 2
    assert "tflite" in capsys.readouterr().err


def test_check_targets_verdicts():
    result = {
        "fast_step_speedup": 12.0,
        "concurrency_ratio": 1.6,
        "runtime_overhead": 0.01,
        "onnx_parity_max_abs": None,
        "fast_step_ms": {"torch": 10.0, "onnxruntime": 8.0},
    }
    t = check_targets(result)
    assert t["fast_step_speedup"]["met"] and not t["concurrency_ratio"]["met"] and t["runtime_overhead"]["met"]
    assert not t["onnx_parity_max_abs"]["met"]  # not measured is not met
    assert t["onnxruntime_vs_torch"] == {"value": 0.8, "target": "<= 1", "met": True}


def test_bench_from_a_checkpoint(tmp_path):
    from automot.model import build_model, save_pretrained

    ckpt = save_pretrained(build_model("tiny", seed=2), tmp_path / "ckpt")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "automot.cli", "bench", "--checkpoint", str(ckpt), "--iters", "2", "--warmup", "1"]
    cmd += ["--dtype", "float32", "--json-out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["preset"] == "tiny" and "loading" in proc.stderr
    # without --json, stdout holds the scalar results as text lines (the JSON document only with --json)
    assert "preset: tiny" in proc.stdout.splitlines() and f"device: {result['device']}" in proc.stdout.splitlines()
