"""scripts/gpu_acceptance.py (issue #14 part 4) on a CPU: argument handling, clear skips, the JSON schema."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_acceptance.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engines", "torch,warp"], "--engines: unknown ['warp']"),
        (["--iters", "0"], "--iters must be >= 1"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--time-budget-s", "0"], "--time-budget-s must be > 0"),
        (["--dtype", "int8"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        _module().parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_out_must_not_be_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _module().parse_args(["--out", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err


def test_cpu_run_writes_the_schema_with_clear_skips(tmp_path):
    out = tmp_path / "acceptance.json"
    argv = ["--device", "cpu", "--preset", "tiny", "--dtype", "fp32", "--bev", "tiny", "--iters", "2", "--warmup", "0"]
    code = subprocess.run([sys.executable, str(SCRIPT), *argv, "--out", str(out)], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    data = json.loads(out.read_text())
    assert data["schema"] == "automot-gpu-acceptance/1" and data["cuda"] is False
    assert set(data) >= {"args", "device", "torch", "tensorrt", "model", "bev_encoder", "skips", "wall_s"}
    model = data["model"]
    assert set(model) >= {"prefill_ms", "fast_step_ms", "tensorrt_parity", "concurrency_ratio", "peak_memory_gb"}
    assert set(model["fast_step_ms"]) == {"torch", "torch-compile", "tensorrt-fp16", "tensorrt-bf16"}
    assert model["prefill_ms"]["p50"] > 0 and model["fast_step_ms"]["torch"]["p99"] > 0
    for engine in ("torch-compile", "tensorrt-fp16", "tensorrt-bf16"):
        assert "CUDA" in model["fast_step_ms"][engine]["skipped"]
    assert model["concurrency_ratio"]["value"] > 0 and "skipped" in model["peak_memory_gb"]
    noise = model["concurrency_ratio"]["machine_noise"]  # whether the box was quiet while the ratio was measured
    assert noise["quiet"] == (noise["idle_tick_p95_over_p50"] <= noise["quiet_limit"])
    bev = data["bev_encoder"]
    assert bev["encoder_ms"]["torch"]["p50"] > 0 and "skipped" in bev["encoder_ms"]["tensorrt-fp16"]
    assert any(s.startswith("model.fast_step_ms.tensorrt-fp16") for s in data["skips"])
    assert "[acceptance] skipped" in code.stderr


def test_time_budget_and_engine_selection_skip_sections(tmp_path):
    mod = _module()
    args = mod.parse_args(
        ["--device", "cpu", "--preset", "tiny", "--bev", "none", "--engines", "torch", "--time-budget-s", "1e-9"]
    )
    data = mod.run(args)
    assert "time budget" in data["model"]["prefill_ms"]["skipped"]
    assert data["model"]["fast_step_ms"]["tensorrt-bf16"] == {"skipped": "not in --engines"}
    assert data["bev_encoder"] == {"skipped": "--bev none"}
