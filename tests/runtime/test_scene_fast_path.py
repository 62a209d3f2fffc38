"""The BEV scene encoder on the runtime's fast path (tiny released-layout model: 4 scene tokens x 368)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automot.model.released.loader import ReleasedParts
from automot.model.released.synthetic import build_tiny_released
from automot.runtime import build_runtime
from automot.runtime.types import DrivingState


def _tiny(seed: int = 0, attach: bool = True):
    model, bev = build_tiny_released(seed)
    if attach:
        model.released = ReleasedParts(bev, bev.cfg, "synthetic")
    return model, bev


@pytest.fixture(scope="module")
def tiny():
    return _tiny()


@pytest.fixture()
def runtime(tiny, scene_kit):
    rt = build_runtime(tiny[0], mode="blocking", engine="torch")
    rt.submit(scene_kit.observation(), 0.0, 0)
    yield rt
    rt.close()


def _encode(bev, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        feature = bev(torch.from_numpy(inputs["rgb"])[None], torch.from_numpy(inputs["lidar"])[None])
    assert feature.shape == (1, 368, 2, 2)
    # Row-major over the 2x2 cells, written out by hand rather than with the runtime's flatten.
    return np.stack([feature[0, :, r, c].numpy() for r in range(2) for c in range(2)])


def test_scene_inputs_match_precomputed_features(tiny, runtime, scene_kit):
    _, bev = tiny
    assert runtime.needs_scene_inputs and runtime.scene_config is bev.cfg
    assert runtime.scene_input_shapes == {"rgb": (3, 64, 128), "lidar": (1, 64, 64)}
    inputs = scene_kit.scene_inputs(1)
    out = runtime.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=inputs), 0.05, 1)
    assert not out.safe_stop, out.safe_stop_reason
    ref = runtime.step(DrivingState(scene_kit.TP, 5.0, scene=_encode(bev, inputs)), 0.05, 1)
    assert not ref.safe_stop
    np.testing.assert_allclose(out.path, ref.path, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.waypoints, ref.waypoints, rtol=1e-5, atol=1e-5)
    assert out.decision_text == ref.decision_text
    # Other sensor inputs give another plan: the encoder output really reaches the action expert.
    other = runtime.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=scene_kit.scene_inputs(2)), 0.05, 1)
    assert not np.allclose(other.path, out.path, atol=1e-4)
    assert out.extras["scene_encoder_ms"] > 0.0 and "scene_encoder_ms" not in ref.extras
    stats = runtime.stats()
    assert stats["scene_encoder_ms"]["count"] == 2 and stats["scene_encoder"] == "BEVEncoder"


def test_missing_or_bad_scene_inputs_stop_with_reason(runtime, scene_kit):
    out = runtime.step(DrivingState(scene_kit.TP, 5.0), 0.05, 1)
    assert out.safe_stop and out.extras["stop_kind"] == "scene_missing"
    assert "scene tokens" in out.safe_stop_reason and "scene_inputs" in out.safe_stop_reason
    bad = scene_kit.scene_inputs(1)
    bad["lidar"] = bad["lidar"][:, :32]
    out = runtime.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=bad), 0.05, 1)
    assert out.safe_stop and "lidar" in out.safe_stop_reason and "(1, 64, 64)" in out.safe_stop_reason
    out = runtime.step(DrivingState(scene_kit.TP, 5.0, scene_inputs={"rgb": scene_kit.scene_inputs(1)["rgb"]}), 0.05, 1)
    assert out.safe_stop and "'lidar'" in out.safe_stop_reason
    assert runtime.stats()["safe_stops"]["scene_missing"] == 3


def test_model_without_encoder_names_the_problem(scene_kit):
    model, _ = _tiny(attach=False)
    with build_runtime(model, mode="blocking", engine="torch") as rt:
        assert rt.needs_scene and not rt.needs_scene_inputs and rt.scene_config is None
        rt.submit(scene_kit.observation(), 0.0, 0)
        out = rt.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=scene_kit.scene_inputs(1)), 0.05, 1)
        assert out.safe_stop and "no scene encoder is attached" in out.safe_stop_reason


def test_encoder_follows_the_model_dtype_and_rejects_a_wrong_grid(scene_kit):
    model, bev = _tiny(seed=3)
    bev.to(torch.bfloat16)  # the loaders keep it outside the model tree: model.to() would not move it
    with build_runtime(model, mode="blocking", engine="torch") as rt:
        assert next(bev.parameters()).dtype == torch.float32
        rt.submit(scene_kit.observation(), 0.0, 0)
        assert not rt.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=scene_kit.scene_inputs(1)), 0.05, 1).safe_stop
    bev.cfg.lidar_resolution_height = 128  # 4x2 = 8 tokens, the model has 4
    try:
        with pytest.raises(ValueError, match="8 tokens"):
            build_runtime(model, mode="blocking", engine="torch")
    finally:
        bev.cfg.lidar_resolution_height = 64


def test_onnxruntime_engine_runs_the_exported_encoder_before_the_exported_step(tiny, runtime, scene_kit):
    inputs = scene_kit.scene_inputs(4)
    ref = runtime.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=inputs), 0.05, 1)
    with build_runtime(tiny[0], mode="blocking", engine="onnxruntime") as rt:
        assert rt.needs_scene_inputs and rt.stats()["scene_engine"] == "onnxruntime"
        rt.submit(scene_kit.observation(), 0.0, 0)
        out = rt.step(DrivingState(scene_kit.TP, 5.0, scene_inputs=inputs), 0.05, 1)
    assert not out.safe_stop, out.safe_stop_reason
    np.testing.assert_allclose(out.path, ref.path, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(out.waypoints, ref.waypoints, rtol=1e-3, atol=1e-3)
