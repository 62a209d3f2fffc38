"""The agent feeding the BEV encoder: camera + LiDAR rig -> scene_inputs -> the tiny released-layout model drives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from automot.agent.automot_agent import AutoMoTAgent
from automot.agent.inputs import SensorFrame
from automot.agent.rigs import get_rig
from automot.agent.runtime_factory import released_layout
from automot.agent.scene_inputs import SceneInputBuilder
from automot.model.released.loader import ReleasedParts, convert_released
from automot.model.released.sensors import lidar_grid_cell
from automot.model.released.synthetic import (
    build_tiny_released,
    tiny_bev_config,
    tiny_released_config,
    write_released_folder,
)
from automot.runtime import build_runtime

W, H = 128, 64  # the tiny BEV config crops 128x64, so this is the smallest camera it accepts
WARMUP = 3


def _config(tmp_path, **overrides) -> str:
    cfg = {
        "image_size": [W, H],
        "recorder": {"video": False, "ticks_jsonl": False},
        "control": {"safety": {"warmup_ticks": WARMUP}},
        **overrides,
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return f"{path}+scene"


@pytest.fixture(scope="module")
def tiny_model():
    model, bev = build_tiny_released(seed=5)
    model.released = ReleasedParts(bev, bev.cfg, "synthetic")
    return model


def _agent(kit, tmp_path, model, **overrides) -> AutoMoTAgent:
    agent = AutoMoTAgent(runtime_factory=lambda cfg: build_runtime(model, mode="sync", engine="torch"))
    agent.set_global_plan(*kit.creeping_plan())
    agent.setup(_config(tmp_path, **overrides))
    return agent


def _drive(kit, agent: AutoMoTAgent, ticks: int) -> list:
    specs = agent.sensors()
    outputs = []
    for t in range(ticks):
        agent.run_step(kit.creeping_inputs(specs, t), 0.05 * t)
        assert agent.last_record.error is None, agent.last_record.error
        if t >= WARMUP:
            outputs.append(agent.last_output)
    return outputs


def test_agent_drives_the_released_layout_model(tmp_path, tiny_model, scene_kit):
    agent = _agent(scene_kit, tmp_path, tiny_model, state_estimator="ukf")
    try:
        assert agent.scene_builder is not None and agent.scene_builder.cfg is tiny_model.released.bev_config
        outputs = _drive(scene_kit, agent, WARMUP + 4)
        assert len(outputs) == 4
        assert not any(o.safe_stop for o in outputs), [o.safe_stop_reason for o in outputs]
        assert all(o.extras["scene_encoder_ms"] > 0 for o in outputs)
        assert agent.runtime.stats()["scene_encoder_ms"]["count"] == 4
    finally:
        agent.destroy()


def test_missing_lidar_or_camera_brakes_then_recovers(tmp_path, tiny_model, caplog, scene_kit):
    agent = _agent(scene_kit, tmp_path, tiny_model)
    specs = agent.sensors()
    try:
        _drive(scene_kit, agent, WARMUP + 1)
        for t, drop in ((WARMUP + 1, "LIDAR"), (WARMUP + 2, "CAM_FRONT")):
            control = agent.run_step(scene_kit.creeping_inputs(specs, t, drop=drop), 0.05 * t)
            assert control.brake == 1.0 and control.throttle == 0.0
            assert drop in agent.last_record.error
        assert "LIDAR" in caplog.text
        agent.run_step(scene_kit.creeping_inputs(specs, WARMUP + 3), 0.05 * (WARMUP + 3))
        assert agent.last_record.error is None and not agent.last_output.safe_stop
    finally:
        agent.destroy()


def test_rig_without_lidar_brakes_with_a_named_error(tmp_path, tiny_model, scene_kit):
    agent = _agent(scene_kit, tmp_path, tiny_model, rig="bench2drive-6cam")
    try:
        control = agent.run_step(scene_kit.creeping_inputs(agent.sensors(), 0), 0.0)
        assert control.brake == 1.0 and "without a LiDAR" in agent.last_record.error
    finally:
        agent.destroy()


def test_camera_smaller_than_the_crop_fails_setup(tmp_path, tiny_model, scene_kit):
    with pytest.raises(ValueError, match="smaller than the BEV encoder's crop"):
        _agent(scene_kit, tmp_path, tiny_model, image_size=[64, 32])


def test_previous_half_sweep_is_realigned_by_the_estimated_motion():
    cfg = tiny_bev_config()
    builder = SceneInputBuilder(cfg, get_rig("automot-front", (W, H)))
    image = {"CAM_FRONT": np.zeros((H, W, 3), np.uint8)}
    imu, gps = np.zeros(7), np.zeros(3)

    def frame(points: np.ndarray) -> SensorFrame:
        return SensorFrame(0, image, gps, imu, 0.0, points.astype(np.float32))

    # One point 5 m ahead, 1 m above the ground (sensor frame: x = -ego y, y = ego x, z = ego z - 2.5).
    assert builder.update(frame(np.array([[0.0, 5.0, -1.5, 1.0]])), np.zeros(2), 0.0, build=False) is None
    # The ego moved 2 m forward and saw nothing new: the old point is now 3 m ahead.
    inputs = builder.update(frame(np.zeros((0, 4))), np.array([2.0, 0.0]), 0.0)
    hist = inputs["lidar"][0]
    assert hist.sum() == pytest.approx(1.0 / cfg.hist_max_per_pixel)
    assert hist[lidar_grid_cell(3.0, 0.0, cfg)] > 0
    assert inputs["rgb"].shape == (3, 64, 128)
    # Only the last half sweep is kept: a second empty tick leaves an empty grid.
    assert builder.update(frame(np.zeros((0, 4))), np.array([2.0, 0.0]), 0.0)["lidar"].sum() == 0
    # A point 3 m ahead, then a 90 degree left turn on the spot (yaw -pi/2, y to the right): it is 3 m right.
    builder.update(frame(np.array([[0.0, 3.0, -1.5, 1.0]])), np.array([2.0, 0.0]), 0.0, build=False)
    inputs = builder.update(frame(np.zeros((0, 4))), np.array([2.0, 0.0]), -math.pi / 2)
    assert inputs["lidar"][0][lidar_grid_cell(0.0, 3.0, cfg)] > 0


def test_agent_loads_a_converted_checkpoint_through_the_factory(tmp_path, scene_kit):
    model, bev = build_tiny_released(seed=2)
    released = write_released_folder(model, bev, tmp_path / "released")
    converted = convert_released(released, tmp_path / "converted", dtype="fp32", preset=tiny_released_config())
    assert released_layout(str(released)) == "released" and released_layout(str(converted)) == "converted"
    assert released_layout(str(tmp_path)) is None
    overrides = {
        "model": {"checkpoint": str(converted), "device": "cpu", "dtype": "float32", "cache": False},
        "runtime": {"mode": "sync", "engine": "torch"},
    }
    agent = AutoMoTAgent()
    agent.set_global_plan(*scene_kit.creeping_plan())
    agent.setup(_config(tmp_path, **overrides))
    try:
        outputs = _drive(scene_kit, agent, WARMUP + 2)
        assert not any(o.safe_stop for o in outputs), [o.safe_stop_reason for o in outputs]
    finally:
        agent.destroy()
