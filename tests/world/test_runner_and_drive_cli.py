"""Embedded world: the leaderboard lifecycle, the privileged expert, results.json and the ``drive`` CLI."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from dataclasses import replace

import pytest
from doubles import evaluator_argv

from automot.cli import main as automot_main
from automot.errors import ExitCode
from automot.world.evaluator import BENCH2DRIVE, LEADERBOARD_2, EvaluatorInstall, EvaluatorRun, build_command
from automot.world.routes import load_route
from automot.world.runner import EXPERT_AGENT, AgentCrashed, load_agent_class, run_route

RECORDING_AGENT = """
from automot.agent.contract import AutonomousAgent, Track, make_control

CALLS = []


def get_entry_point():
    return "RecordingAgent"


class RecordingAgent(AutonomousAgent):
    def __init__(self, carla_host, carla_port, debug=False):
        super().__init__(carla_host, carla_port, debug)
        CALLS.append(("init", carla_host, carla_port, debug))

    def set_global_plan(self, global_plan_gps, global_plan_world_coord):
        CALLS.append(("set_global_plan", len(global_plan_gps), len(global_plan_world_coord)))
        super().set_global_plan(global_plan_gps, global_plan_world_coord)

    def setup(self, path_to_conf_file):
        self.track = Track.SENSORS
        CALLS.append(("setup", path_to_conf_file, self._global_plan is not None))

    def sensors(self):
        CALLS.append(("sensors",))
        return [
            {"type": "sensor.camera.rgb", "id": "CAM", "x": -1.5, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0,
             "yaw": 0.0, "width": 128, "height": 64, "fov": 110},
            {"type": "sensor.lidar.ray_cast", "id": "LIDAR", "x": 0.0, "y": 0.0, "z": 2.5, "roll": 0.0,
             "pitch": 0.0, "yaw": -90.0},
            {"type": "sensor.other.imu", "id": "IMU", "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.0, "pitch": 0.0,
             "yaw": 0.0},
            {"type": "sensor.other.gnss", "id": "GPS", "x": 0.0, "y": 0.0, "z": 0.0},
            {"type": "sensor.speedometer", "id": "SPEED", "reading_frequency": 20},
        ]

    def run_step(self, input_data, timestamp):
        shapes = {k: (v[0], getattr(v[1], "shape", None), str(getattr(v[1], "dtype", type(v[1]).__name__)))
                  for k, v in input_data.items()}
        CALLS.append(("run_step", timestamp, shapes))
        if FAIL_AT is not None and len([c for c in CALLS if c[0] == "run_step"]) >= FAIL_AT:
            raise RuntimeError("boom")
        return make_control(throttle=0.5)

    def destroy(self):
        CALLS.append(("destroy",))


FAIL_AT = None
"""


def _write_agent(tmp_path, name: str, fail_at: int | None = None, sensors_override: str = ""):
    source = RECORDING_AGENT.replace("FAIL_AT = None", f"FAIL_AT = {fail_at!r}")
    if sensors_override:
        source += textwrap.dedent(sensors_override)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return path


def test_lifecycle_order_and_input_data(tmp_path):
    path = _write_agent(tmp_path, "lifecycle_agent_ok")
    results = run_route("highway_lane_keep", path, "cfg.yaml", tmp_path / "out", ticks=12, progress=False)
    module = load_agent_class(path).__module__
    import sys

    calls = sys.modules[module].CALLS
    names = [c[0] for c in calls]
    assert names[:4] == ["init", "set_global_plan", "setup", "sensors"]
    assert names[-1] == "destroy" and names.count("run_step") == 12 and names.count("sensors") == 1
    assert calls[0][1:] == ("localhost", 2000, False)
    assert calls[1][1] == calls[1][2] > 400  # the dense (1 m) plan; the agent base class downsamples it
    # The plan is already there in setup(); the config string carries the save name as Bench2Drive's does.
    save_name = results["_checkpoint"]["records"][0]["save_name"]
    assert calls[2] == ("setup", f"cfg.yaml+{save_name}", True)
    steps = [c for c in calls if c[0] == "run_step"]
    assert [round(c[1], 2) for c in steps[:3]] == [0.0, 0.05, 0.1]
    shapes = steps[0][2]
    assert set(shapes) == {"CAM", "LIDAR", "IMU", "GPS", "SPEED"}
    assert shapes["CAM"][1:] == ((64, 128, 4), "uint8")
    assert shapes["LIDAR"][1][1] == 4 and shapes["LIDAR"][2] == "float32"
    assert shapes["IMU"][1:] == ((7,), "float64") and shapes["GPS"][1:] == ((3,), "float64")
    assert shapes["SPEED"][2] == "dict"
    assert [s[2]["CAM"][0] for s in steps[:3]] == [0, 1, 2]  # frame numbers
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["_checkpoint"]["records"][0]["status"] == "Stopped - tick limit"  # the ticks cap, no timeout
    assert on_disk["_checkpoint"]["records"][0]["infractions"]["route_timeout"] == []
    assert on_disk["sensors"] == ["carla_camera", "carla_lidar", "carla_imu", "carla_gnss", "carla_speedometer"]
    assert 0.0 < on_disk["score_route"] < 5.0


def test_agent_crash_is_recorded_and_raised(tmp_path):
    path = _write_agent(tmp_path, "lifecycle_agent_crash", fail_at=3)
    with pytest.raises(AgentCrashed, match="boom") as info:
        run_route("highway_lane_keep", path, "", tmp_path, ticks=20, progress=False)
    record = info.value.results["_checkpoint"]["records"][0]
    assert record["status"] == "Failed - Agent crashed"
    assert info.value.results["entry_status"] == "Started" and info.value.results["eligible"] is False
    assert (
        json.loads((tmp_path / "results.json").read_text())["_checkpoint"]["records"][0]["status"] == record["status"]
    )


def test_invalid_sensors_reject_the_entry(tmp_path):
    override = """
    def _bad_sensors(self):
        return [{"type": "sensor.other.radar", "id": "RADAR", "x": 0.0, "y": 0.0, "z": 1.0}]

    RecordingAgent.sensors = _bad_sensors
    """
    path = _write_agent(tmp_path, "lifecycle_agent_radar", sensors_override=override)
    with pytest.raises(AgentCrashed):
        run_route("highway_lane_keep", path, "", tmp_path, ticks=5, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["entry_status"] == "Rejected"
    assert results["_checkpoint"]["records"][0]["status"] == "Failed - Agent's sensors were invalid"


def test_expert_completes_a_short_route(tmp_path):
    spec = load_route("highway_lane_keep").truncated(80.0)
    results = run_route(spec, EXPERT_AGENT, "", tmp_path, progress=False)
    record = results["_checkpoint"]["records"][0]
    assert results["score_composed"] > 80.0
    assert record["status"] in ("Perfect", "Completed")
    assert record["meta"]["route_length"] == pytest.approx(80.0)
    assert json.loads((tmp_path / "results.json").read_text())["score_composed"] == results["score_composed"]


def test_expert_yields_at_the_intersection_without_collisions(tmp_path):
    spec = load_route("intersection").truncated(85.0)  # through the left turn
    results = run_route(spec, EXPERT_AGENT, "", tmp_path, seed=1, progress=False)
    record = results["_checkpoint"]["records"][0]
    assert record["infractions"]["collisions_vehicle"] == []
    assert results["score_composed"] > 80.0


def test_runs_are_deterministic_per_seed(tmp_path):
    spec = load_route("merge").truncated(60.0)
    a = run_route(spec, EXPERT_AGENT, "", tmp_path / "a", seed=3, progress=False)
    b = run_route(spec, EXPERT_AGENT, "", tmp_path / "b", seed=3, progress=False)
    ra, rb = (r["_checkpoint"]["records"][0] for r in (a, b))
    assert ra["meta"]["duration_game"] == rb["meta"]["duration_game"] and ra["scores"] == rb["scores"]


def test_cli_lists_routes(capsys):
    assert automot_main(["drive", "--list-routes"]) == 0
    out = capsys.readouterr().out
    assert "highway_lane_keep" in out and "roundabout" in out


def test_cli_drives_the_expert(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AUTOMOT_RECORD_DIR", "unset")  # restored after the test; the CLI overwrites it
    code = automot_main(
        [
            "drive",
            "--route",
            "roundabout",
            "--agent",
            "expert",
            "--out",
            str(tmp_path),
            "--ticks",
            "40",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "driving score" in out and "Stopped - tick limit" in out
    assert (tmp_path / "results.json").is_file()
    import os

    # the recorder folder was this run's only while it drove: a later agent in this process must not write there
    assert os.environ["AUTOMOT_RECORD_DIR"] == "unset"


def test_cli_unknown_route_and_missing_carla(tmp_path, capsys, monkeypatch):
    code = automot_main(["drive", "--route", "nowhere", "--agent", "expert", "--out", str(tmp_path)])
    assert code == ExitCode.USAGE
    assert "known routes" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "carla", None)  # find_spec("carla") is None: the client counts as missing
    assert automot_main(["drive", "--world", "carla", "--routes", "r.xml"]) == ExitCode.ENVIRONMENT
    err = capsys.readouterr().err
    assert "PYTHONPATH" in err and "carla" in err


FAKE_EVALUATOR = """
import json, os, sys

with open(os.environ["FAKE_EVALUATOR_LOG"], "w") as fh:
    json.dump({"argv": sys.argv[1:], "script": os.path.realpath(__file__), "executable": sys.executable,
               "sentinel": os.environ.get("FAKE_SENTINEL")}, fh)
sys.exit(int(os.environ.get("FAKE_EVALUATOR_EXIT", "0")))
"""


@pytest.fixture()
def fake_carla_install(tmp_path, monkeypatch):
    """Importable stand-ins for ``carla``, ``leaderboard`` (with a ``leaderboard_evaluator`` that logs its command
    line and environment) and ``srunner``, on this process's sys.path and on PYTHONPATH for subprocesses."""
    root = tmp_path / "site"
    for package in ("carla", "leaderboard", "srunner"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "leaderboard" / "leaderboard_evaluator.py").write_text(FAKE_EVALUATOR)
    for name in ("carla", "leaderboard", "srunner"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    log = tmp_path / "evaluator.json"
    monkeypatch.setenv("FAKE_EVALUATOR_LOG", str(log))
    monkeypatch.setenv("FAKE_SENTINEL", "inherited")
    return log


def test_drive_carla_runs_the_leaderboard_evaluator_with_its_flags(tmp_path, fake_carla_install, monkeypatch, capsys):
    """``automot drive --world carla`` runs the importable leaderboard_evaluator.py with the same interpreter and the
    caller's environment. Paths reach it absolute (the evaluator may run in another folder): one that exists from the
    current folder as it is, one that does not relative to the repository (the defaults). A failed evaluation is
    RUN_FAILED, not success."""
    from automot.world.cli import REPO_ROOT, missing_carla_modules

    assert missing_carla_modules() == []
    work = tmp_path.resolve() / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("routes.xml", "agent.yaml"):
        (work / name).write_text("")
    argv = ["drive", "--world", "carla", "--routes", "routes.xml", "--agent", "agent/automot_agent.py"]
    argv += ["--agent-config", "agent.yaml", "--host", "carla-host", "--port", "2010", "--tm-port", "8010"]
    argv += ["--out", "out"]
    assert automot_main(argv) == 0
    seen = json.loads(fake_carla_install.read_text())
    assert seen["script"] == str((tmp_path / "site" / "leaderboard" / "leaderboard_evaluator.py").resolve())
    # docs/leaderboard-agent-interface.md §7: the evaluator's own flags; --resume is left out (type=bool: any value
    # means True).
    assert seen["argv"] == [
        "--routes",
        str(work / "routes.xml"),
        "--agent",
        str((REPO_ROOT / "agent" / "automot_agent.py").resolve()),
        "--agent-config",
        str(work / "agent.yaml"),
        "--track",
        "SENSORS",
        "--host",
        "carla-host",
        "--port",
        "2010",
        "--traffic-manager-port",
        "8010",
        "--checkpoint",
        str(work / "out" / "results.json"),
        "--debug-checkpoint",
        str(work / "out" / "live_results.txt"),
    ]
    assert seen["executable"] == sys.executable  # the same interpreter, so the installed automot is importable
    assert seen["sentinel"] == "inherited"  # the caller's environment (PYTHONPATH, CUDA_VISIBLE_DEVICES...) reaches it
    assert (work / "out").is_dir()
    capsys.readouterr()

    monkeypatch.setenv("FAKE_EVALUATOR_EXIT", "7")  # a failed evaluation must not look like a finished one
    assert automot_main(argv) == ExitCode.RUN_FAILED
    assert "7" in capsys.readouterr().err


@pytest.mark.skipif(evaluator_argv.missing() is not None, reason=str(evaluator_argv.missing()))
@pytest.mark.parametrize("flavour", [LEADERBOARD_2, BENCH2DRIVE])
def test_every_evaluator_option_we_pass_parses_upstream(flavour, tmp_path):
    """build_command with every option set, read back by the real evaluator's own parser (Leaderboard 2.0 and the
    Bench2Drive fork, which alone has --gpu-rank): each value arrives with its type; --resume only when resuming."""
    full = EvaluatorRun(
        routes="r.xml",
        agent="/a/agent.py",
        agent_config="/a/agent.yaml",
        checkpoint="/o/results.json",
        debug_checkpoint="/o/live_results.txt",
        host="carla-host",
        port=2010,
        tm_port=8010,
        tm_seed=3,
        routes_subset="0-4",
        repetitions=2,
        resume=True,
        timeout=120.0,
        record="/o/records",
        debug=1,
        gpu_rank=1 if flavour == BENCH2DRIVE else None,
    )
    install = EvaluatorInstall(tmp_path / "lb", None, flavour)
    cmd = build_command(install, full)
    assert cmd[1] == str(tmp_path / "lb" / "leaderboard" / "leaderboard_evaluator.py")
    parser = evaluator_argv.upstream_parser(flavour)
    args = parser.parse_args(cmd[2:])
    assert (args.routes, args.agent, args.agent_config, args.track) == (
        "r.xml",
        "/a/agent.py",
        "/a/agent.yaml",
        "SENSORS",
    )
    assert (args.host, args.port, args.traffic_manager_port, args.traffic_manager_seed) == ("carla-host", 2010, 8010, 3)
    assert (args.checkpoint, args.debug_checkpoint, args.record) == (
        "/o/results.json",
        "/o/live_results.txt",
        "/o/records",
    )
    assert (args.routes_subset, args.repetitions, args.timeout, args.debug, args.resume) == ("0-4", 2, 120.0, 1, True)
    if flavour == BENCH2DRIVE:
        assert args.gpu_rank == 1
    plain = parser.parse_args(build_command(install, replace(full, resume=False))[2:])
    assert plain.resume is False  # type=bool upstream: passing any value, even "False", would resume
