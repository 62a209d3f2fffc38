"""Agent YAML loading, sensor rigs and the camera model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from automot.agent.config import AgentConfig, ConfigError, agent_config_from_dict, load_agent_config
from automot.agent.rigs import (
    CAMERA,
    SensorConfigError,
    camera_extrinsics,
    camera_intrinsics,
    get_rig,
    project_ego_points,
    rotation_matrix,
    validate_sensors,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "leaderboard_configs"


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        agent_config_from_dict(data, "test.yaml")
    return str(info.value)


def test_defaults_and_shipped_yamls_load():
    assert agent_config_from_dict(None) == AgentConfig()
    front = load_agent_config(CONFIG_DIR / "automot_front.yaml")
    six = load_agent_config(CONFIG_DIR / "bench2drive_6cam.yaml")
    assert front.rig == "automot-front" and six.rig == "bench2drive-6cam"
    assert front.control.lateral.kp == pytest.approx(3.118) and front.control.safety.warmup_ticks == 31
    assert front.history.offsets == [15, 10, 5, 0] and front.recorder.video is True
    assert load_agent_config("") == AgentConfig()


def test_released_profile_loads_with_the_spec_constants():
    cfg = load_agent_config(CONFIG_DIR / "automot_released.yaml")
    assert (cfg.model.preset, cfg.model.dtype) == ("automot-4b", "bfloat16")
    assert cfg.model.checkpoint  # a path the user fills in, never random weights
    assert (cfg.runtime.mode, cfg.runtime.sync_every, cfg.runtime.engine) == ("sync", 2, "torch")
    assert cfg.rig == "automot-front" and cfg.state_estimator == "ukf" and cfg.control.escape.enabled
    # Every constant is written out and equals the code defaults, which carry the released values
    # (docs/released-agent.md).
    assert cfg.ukf == AgentConfig().ukf and cfg.route == AgentConfig().route
    defaults = AgentConfig().control
    assert cfg.control.lateral == defaults.lateral and cfg.control.longitudinal == defaults.longitudinal
    assert cfg.control.safety == defaults.safety
    assert cfg.control.escape == type(defaults.escape)(enabled=True)
    text = (CONFIG_DIR / "automot_released.yaml").read_text()
    assert "automot convert --from-automot" in text and "mode: async" in text and "tensorrt" in text
    demo = load_agent_config(CONFIG_DIR / "automot_front.yaml")
    assert demo.state_estimator == "gnss" and not demo.control.escape.enabled


def test_values_are_typed():
    cfg = agent_config_from_dict(
        {"image_size": [320, 160], "control": {"lateral": {"kp": 2}}, "runtime": {"options": {"threads_fast": 3}}}
    )
    assert cfg.image_size == (320, 160)
    assert isinstance(cfg.control.lateral.kp, float) and cfg.control.lateral.kp == 2.0
    # The earlier untyped runtime.options keys are the runtime's own typed fields now.
    assert cfg.runtime.threads_fast == 3 and cfg.runtime.resolved_threads()[0] == 3
    # --set runtime.options.X on a saved config (every field flat): the options entry wins
    both = agent_config_from_dict(
        {"runtime": {"max_snapshot_age_ticks": 20, "options": {"max_snapshot_age_ticks": None}}}
    )
    assert both.runtime.max_snapshot_age_ticks is None


@pytest.mark.parametrize(
    ("runtime", "path", "rule"),
    [
        ({"options": {"x": 1}}, "runtime.options.x", "unknown field"),
        ({"options": {"threads_fast": "two"}}, "runtime.threads_fast", "expected int or null"),
        ({"options": {"threads_fast": 0}}, "runtime.threads_fast", "must be >= 1 or None"),
        ({"max_snapshot_age_s": 0}, "runtime.max_snapshot_age_s", "must be > 0 or None"),
    ],
)
def test_runtime_options_are_the_runtime_config_fields(runtime, path, rule):
    with pytest.raises(ConfigError) as info:
        agent_config_from_dict({"runtime": runtime}, "test.yaml")
    line = next(p for p in info.value.problems if p.startswith(path + ":"))
    assert rule in line


def test_one_runtime_config_class():
    from automot.runtime.config import RuntimeConfig as RuntimeSide

    assert AgentConfig().runtime == RuntimeSide() and type(AgentConfig().runtime) is RuntimeSide


def test_unknown_field_names_its_path_and_suggests():
    msg = _error({"runtime": {"sync_evry": 3}})
    assert "runtime.sync_evry: unknown field" in msg and "sync_every" in msg
    assert "modle: unknown field" in _error({"modle": {}})


@pytest.mark.parametrize(
    ("data", "path", "expected", "got"),
    [
        ({"runtime": {"mode": "fast"}}, "runtime.mode", "one of 'async', 'sync', 'blocking'", "'fast'"),
        ({"control": {"lateral": {"kp": "high"}}}, "control.lateral.kp", "a number", "'high' (str)"),
        ({"control": {"safety": {"warmup_ticks": 3.5}}}, "control.safety.warmup_ticks", "int", "3.5 (float)"),
        ({"strict": "yes"}, "strict", "bool", "'yes' (str)"),
        ({"recorder": {"video": 1}}, "recorder.video", "bool", "1 (int)"),
        ({"history": {"offsets": [15, "x"]}}, "history.offsets[1]", "int", "'x'"),
        ({"image_size": [320]}, "image_size", "a list [int, int] or null", "[320]"),
        ({"model": "tiny"}, "model", "ModelConfig section", "'tiny' (str)"),
        ({"model": {"checkpoint": 5}}, "model.checkpoint", "str or null", "5 (int)"),
    ],
)
def test_bad_types_name_field_expected_and_got(data, path, expected, got):
    with pytest.raises(ConfigError) as info:
        agent_config_from_dict(data, "test.yaml")
    assert str(info.value).startswith("test.yaml: ")
    line = next(p for p in info.value.problems if p.startswith(path + ":"))
    assert expected in line and got in line


def test_all_problems_reported_in_one_error():
    with pytest.raises(ConfigError) as info:
        agent_config_from_dict({"runtime": {"mode": 1, "engine": "jax"}, "rigg": "x"})
    assert len(info.value.problems) == 3


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"rig": "eight-cams"}, "rig"),
        ({"history": {"offsets": [40, 0]}}, "history.offsets[0]"),
        ({"runtime": {"sync_every": 0}}, "runtime.sync_every"),
        ({"recorder": {"video_height": 100}}, "recorder.video_height"),
        ({"gnss": {"lat_ref": 42.0}}, "gnss.lon_ref"),
    ],
)
def test_range_checks(data, path):
    assert f"{path}: must be" in _error(data)


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtime: {mode: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line 2"):
        load_agent_config(bad)
    with pytest.raises(ConfigError, match=r"missing\.yaml: agent config file not found"):
        load_agent_config(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping at the top level, got \[1, 2\] \(list\)"):
        load_agent_config(listy)
    with pytest.raises(ConfigError, match=r"<root>: expected a mapping \(AgentConfig section\), got \[1\] \(list\)"):
        agent_config_from_dict([1])


@pytest.mark.parametrize("name", ["automot-front", "bench2drive-6cam"])
def test_rigs_within_leaderboard_limits(name):
    rig = get_rig(name)
    specs = rig.to_leaderboard()
    validate_sensors(specs)
    ids = [s["id"] for s in specs]
    assert len(ids) == len(set(ids))
    assert {"IMU", "GPS", "SPEED"} <= set(ids) and rig.primary_camera in ids
    for spec in specs:
        if spec["type"] != "sensor.speedometer":
            assert math.dist((0, 0, 0), (spec["x"], spec["y"], spec["z"])) <= 3.0


def test_rig_contents():
    front = get_rig("automot-front")
    cam = front.get("CAM_FRONT").to_dict()
    assert (cam["width"], cam["height"], cam["fov"], cam["x"], cam["z"]) == (1024, 512, 110.0, -1.5, 2.0)
    assert front.get("LIDAR").yaw == -90.0 and front.get("LIDAR").z == 2.5
    six = get_rig("bench2drive-6cam")
    assert len(six.cameras()) == 6 and six.get("CAM_BACK").fov == 110.0 and six.get("GPS").x == -1.4
    small = get_rig("automot-front", image_size=(256, 128))
    assert (small.get("CAM_FRONT").width, small.get("CAM_FRONT").height) == (256, 128)


def test_validate_rejects_what_the_leaderboard_rejects():
    cams = [
        {"type": CAMERA, "id": f"C{i}", "x": 0, "y": 0, "z": 1, "width": 8, "height": 8, "fov": 90} for i in range(9)
    ]
    with pytest.raises(SensorConfigError, match="too many"):
        validate_sensors(cams)
    with pytest.raises(SensorConfigError, match="duplicate"):
        validate_sensors([cams[0], dict(cams[0])])
    with pytest.raises(SensorConfigError, match="mounted"):
        validate_sensors([{**cams[0], "z": 3.5}])
    with pytest.raises(SensorConfigError, match="too many"):
        validate_sensors(cams[:5], qualifier=True)


def test_intrinsics_and_extrinsics():
    cam = get_rig("automot-front").get("CAM_FRONT")
    k = camera_intrinsics(cam)
    assert k[0, 0] == pytest.approx(1024 / (2 * math.tan(math.radians(55))))
    assert (k[0, 2], k[1, 2]) == (512.0, 256.0)
    pose = camera_extrinsics(cam)
    np.testing.assert_allclose(pose[:3, 3], [-1.5, 0.0, 2.0])
    # Yaw 90 turns the forward axis to the right (+y); pitch -90 looks down (-z).
    np.testing.assert_allclose(rotation_matrix(0, 0, 90)[:, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix(0, -90, 0)[:, 0], [0, 0, -1], atol=1e-12)
    back = camera_extrinsics(get_rig("bench2drive-6cam").get("CAM_BACK"))
    np.testing.assert_allclose(back[:3, 0], [-1, 0, 0], atol=1e-12)


def test_ground_projection():
    cam = get_rig("automot-front").get("CAM_FRONT")
    k, pose = camera_intrinsics(cam), camera_extrinsics(cam)
    pts = np.array([[10.0, 0.0], [10.0, 2.0], [-5.0, 0.0], [1000.0, 0.0]])
    uv, valid = project_ego_points(pts, k, pose)
    assert valid.tolist() == [True, True, False, True]
    assert uv[0, 0] == pytest.approx(512.0) and uv[0, 1] == pytest.approx(256 + k[1, 1] * 2.0 / 11.5)
    assert uv[1, 0] > 512.0  # right of the centre line
    assert np.isnan(uv[2]).all()
    assert uv[3, 1] == pytest.approx(256.0, abs=1.0)  # far points approach the horizon


def test_relative_checkpoint_resolves_beside_the_config(tmp_path, monkeypatch):
    from automot.agent.config import load_agent_config

    (tmp_path / "ckpts" / "demo").mkdir(parents=True)
    (tmp_path / "configs").mkdir()
    cfg_file = tmp_path / "configs" / "agent.yaml"
    cfg_file.write_text("model:\n  checkpoint: ../ckpts/demo\n")
    monkeypatch.chdir(tmp_path.parent)
    assert load_agent_config(cfg_file).model.checkpoint == str((tmp_path / "ckpts" / "demo").resolve())
