"""Fast-step export: ONNX parity against torch on the real tiny model, parity.json, and clear CLI errors."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from automot.cli import main
from automot.model import build_model, get_config, make_dummy_inputs, save_pretrained
from automot.runtime.engines import OnnxRuntimeEngine, TorchEngine
from automot.runtime.export import compare, export, export_onnx, synthetic_fast_inputs

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def model():
    return build_model("tiny")


@pytest.fixture(scope="module")
def onnx_file(model, tmp_path_factory):
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "fast_step.onnx")


def _inputs(model, seed: int):
    obs, state = make_dummy_inputs(model.config, batch=1, seed=seed)
    snap = model.prefill(obs, capacity=model.config.max_prefix_tokens)
    return snap.keys, snap.values, snap.pad_mask, snap.next_position, state.target_points, state.speed, state.scene


def test_onnxruntime_matches_torch_on_padded_prefill(model, onnx_file):
    ort_engine = OnnxRuntimeEngine(onnx_file, threads=1)
    torch_engine = TorchEngine(model.fast_step_module())
    assert ort_engine.input_names == ["keys", "values", "pad_mask", "next_position", "target_points", "speed"]
    for seed in (3, 4):  # not the export's seed: nothing input-dependent was baked into the graph
        inputs = _inputs(model, seed)
        assert int(inputs[2].sum()) < inputs[2].shape[1]  # really padded
        got, ref = ort_engine(*inputs), torch_engine(*inputs)
        assert [a.shape for a in got] == [(1, 20, 2), (1, 6, 2), (1, 8, model.config.vocab_size)]
        for name, r in compare(list(ref), list(got)).items():
            assert r["max_abs"] <= 1e-4, name
            assert r["cosine"] >= 0.9999, name


def test_pad_mask_and_next_position_are_live_inputs(model, onnx_file):
    """A graph that ignored the mask (or froze the position) would pass parity on one case only."""
    engine = OnnxRuntimeEngine(onnx_file, threads=1)
    base = _inputs(model, 0)
    full = synthetic_fast_inputs(base, valid=200, seed=5)
    short = (full[0], full[1], full[2].clone(), full[3], *full[4:])
    short[2][:, 100:] = False
    a, b = engine(*full), engine(*short)
    assert np.abs(a[0] - b[0]).max() > 1e-4
    with torch.inference_mode():
        ref = [t.numpy() for t in model.fast_step_module()(*short)]
    assert np.abs(ref[0] - b[0]).max() <= 1e-4


def test_export_writes_parity_json(model, tmp_path):
    summary = export(model, "onnx", tmp_path, source="test")
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["passed"] and summary["passed"]
    assert parity["max_abs"] <= 1e-4 and parity["cosine_min"] >= 0.9999
    assert parity["capacity"] == model.config.max_prefix_tokens
    assert set(parity["results"]["onnx"]["cases"]) == {"prefill_seed1", "synthetic_half", "synthetic_short"}
    assert (tmp_path / parity["files"]["onnx"]).is_file()


def test_cli_export_checkpoint_roundtrip(model, tmp_path, capsys):
    ckpt = save_pretrained(model, tmp_path / "ckpt")
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(ckpt), "--backend", "onnx", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["passed"] and (out / "fast_step.onnx").is_file()
    assert json.loads((out / "parity.json").read_text())["source"] == f"checkpoint:{ckpt}"


def test_cli_export_unknown_preset(tmp_path, capsys):
    assert main(["export", "--preset", "huge", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'huge'" in err and "tiny" in err
    assert not (tmp_path / "parity.json").exists()


def test_cli_export_missing_checkpoint(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["export", "--checkpoint", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "config.yaml" in err


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed: the missing-package message cannot be produced")
def test_cli_export_tensorrt_missing_is_clear(tmp_path, capsys):
    code = main(["export", "--preset", "tiny", "--backend", "tensorrt", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3
    assert "'tensorrt' Python package" in err and "pip install .[trt]" in err and "GPU" in err
    assert not any(tmp_path.iterdir())  # failed before doing any work


def test_tensorrt_engine_parity(model, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is an optional GPU extra: pip install .[trt]")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device")
    summary = export(build_model("tiny"), "tensorrt", tmp_path, precision="fp16")
    assert summary["passed"], summary["results"]["tensorrt"]
    assert (tmp_path / summary["files"]["tensorrt"]).is_file()


def test_scene_tokens_are_an_exported_input(tmp_path):
    cfg = get_config("tiny")
    cfg.tokens.num_scene_tokens, cfg.tokens.scene_dim, cfg.name = 4, 12, "tiny-scene"
    scene_model = build_model(cfg, seed=1)
    summary = export(scene_model, "onnx", tmp_path)
    assert summary["passed"] and summary["inputs"][-1] == "scene"
    engine = OnnxRuntimeEngine(tmp_path / "fast_step.onnx", threads=1)
    assert engine.input_names[-1] == "scene"
    inputs = list(_inputs(scene_model, 0))
    a = engine(*inputs)
    inputs[-1] = inputs[-1] + 1.0
    b = engine(*inputs)
    assert np.abs(a[0] - b[0]).max() > 1e-4  # the scene really feeds the plan
