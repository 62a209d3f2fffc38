"""BEV encoder export: ONNX parity vs eager torch, the runtime's ONNX scene path, and ``automot export`` output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from automot.model.released.loader import ReleasedParts, convert_released
from automot.model.released.synthetic import build_tiny_released, tiny_released_config, write_released_folder
from automot.runtime import build_runtime
from automot.runtime.engines import OnnxSceneEngine
from automot.runtime.export import (
    StaticAdaptiveAvgPool2d,
    export_bev_onnx,
    scene_inputs_for_export,
    validate_bev_parity,
)
from automot.runtime.types import DrivingState


@pytest.fixture(scope="module")
def tiny():
    model, bev = build_tiny_released(0)
    model.released = ReleasedParts(bev, bev.cfg, "synthetic")
    return model, bev


@pytest.fixture(scope="module")
def bev_onnx(tiny, tmp_path_factory):
    return export_bev_onnx(tiny[1], tmp_path_factory.mktemp("bev") / "bev_encoder.onnx")


@pytest.mark.parametrize(("n_in", "n_out"), [(13, 4), (8, 2), (5, 5), (7, 3)])
def test_static_pool_equals_adaptive_pool(n_in: int, n_out: int):
    x = torch.randn(2, 3, n_in, n_in + 3)
    ref = torch.nn.AdaptiveAvgPool2d((n_out, 2))(x)
    torch.testing.assert_close(StaticAdaptiveAvgPool2d((n_out, 2))(x), ref, atol=1e-6, rtol=1e-6)


def test_onnx_bev_matches_torch(tiny, bev_onnx):
    _, bev = tiny
    assert all(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in (bev.avgpool_img, bev.avgpool_lidar))  # restored
    engine = OnnxSceneEngine(bev_onnx)
    for seed in (5, 6):  # not the export's inputs
        rgb, lidar = scene_inputs_for_export(bev.cfg, seed=seed)
        with torch.inference_mode():
            ref = bev(rgb, lidar).numpy()
        got = engine(rgb.numpy(), lidar.numpy()).numpy()
        assert got.shape == ref.shape == (1, 368, 2, 2)
        assert np.abs(got - ref).max() <= 1e-4
    # The graph really depends on both inputs (nothing was constant-folded from the tracing inputs).
    rgb, lidar = scene_inputs_for_export(bev.cfg, seed=5)
    base = engine(rgb.numpy(), lidar.numpy()).numpy()
    assert np.abs(engine(rgb.numpy(), np.zeros_like(lidar.numpy())).numpy() - base).max() > 1e-3
    assert np.abs(engine(np.zeros_like(rgb.numpy()), lidar.numpy()).numpy() - base).max() > 1e-3
    report = validate_bev_parity(bev, engine)
    assert report["passed"] and report["max_abs"] <= 1e-4 and report["cosine_min"] >= 0.9999
    assert report["inputs"] == {"rgb": [1, 3, 64, 128], "lidar": [1, 1, 64, 64]}


def test_runtime_onnx_scene_engine_matches_torch(tiny, bev_onnx, scene_kit):
    inputs = scene_kit.scene_inputs(4)
    with build_runtime(tiny[0], mode="blocking", engine="torch") as rt:
        assert rt.stats()["scene_engine"] == "torch"
        rt.submit(scene_kit.observation(), 0.0, 0)
        ref = rt.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=inputs), 0.05, 1)
    assert not ref.safe_stop, ref.safe_stop_reason
    for scene_file in (None, str(bev_onnx)):  # exported on construction, and a prebuilt file
        with build_runtime(tiny[0], mode="blocking", engine="onnxruntime", scene_engine_file=scene_file) as rt:
            assert isinstance(rt.scene_encoder.backend, OnnxSceneEngine)
            rt.submit(scene_kit.observation(), 0.0, 0)
            out = rt.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=inputs), 0.05, 1)
            other = rt.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=scene_kit.scene_inputs(9)), 0.05, 1)
            stats = rt.stats()
        assert not out.safe_stop, out.safe_stop_reason
        np.testing.assert_allclose(out.path, ref.path, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(out.waypoints, ref.waypoints, rtol=1e-3, atol=1e-3)
        assert not np.allclose(other.path, out.path, atol=1e-4)  # the ONNX encoder output reaches the action step
        assert out.extras["scene_encoder_ms"] > 0.0
        assert stats["scene_engine"] == "onnxruntime" and stats["scene_encoder_ms"]["count"] == 2
        assert rt.scene_encoder.backend is None  # released on close


def test_runtime_onnx_scene_engine_is_used_not_eager(tiny, bev_onnx, monkeypatch, scene_kit):
    """With engine=onnxruntime the eager encoder must not run on the step."""
    model, bev = tiny
    with build_runtime(model, mode="blocking", engine="onnxruntime", scene_engine_file=str(bev_onnx)) as rt:
        rt.submit(scene_kit.observation(), 0.0, 0)

        def boom(*args, **kwargs):
            raise AssertionError("eager BEV encoder called")

        monkeypatch.setattr(bev, "forward", boom)
        out = rt.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=scene_kit.scene_inputs(4)), 0.05, 1)
    assert not out.safe_stop, out.safe_stop_reason


def test_cli_export_converted_released_checkpoint(tmp_path, capsys):
    from automot.cli import main

    model, bev = build_tiny_released(seed=2)
    released = write_released_folder(model, bev, tmp_path / "released")
    converted = convert_released(released, tmp_path / "converted", dtype="fp32", preset=tiny_released_config())
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(converted), "--backend", "onnx", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["passed"]
    assert printed["files"] == {"onnx": "fast_step.onnx", "bev_onnx": "bev_encoder.onnx"}
    assert (out / "fast_step.onnx").is_file() and (out / "bev_encoder.onnx").is_file()
    parity = json.loads((out / "parity.json").read_text())
    assert "scene" in parity["inputs"] and parity["results"]["onnx"]["passed"]
    entry = parity["bev_encoder"]
    assert entry["passed"] and entry["max_abs"] <= 1e-4 and entry["cosine_min"] >= 0.9999
    assert entry["output_shape"] == [1, 368, 2, 2]
    assert entry["inputs"] == {"rgb": [1, 3, 64, 128], "lidar": [1, 1, 64, 64]}
    assert set(entry["results"]["onnx"]["cases"]) == {"random_seed1", "empty_lidar", "saturated_rgb"}
    # The exported encoder is the checkpoint's: it reproduces the original (unconverted) encoder's output.
    rgb, lidar = scene_inputs_for_export(bev.cfg, seed=11)
    with torch.inference_mode():
        ref = bev(rgb, lidar).numpy()
    got = OnnxSceneEngine(out / "bev_encoder.onnx")(rgb.numpy(), lidar.numpy()).numpy()
    assert np.abs(got - ref).max() <= 1e-4
