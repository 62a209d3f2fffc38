"""The real Leaderboard 2.0 and Bench2Drive evaluators driving our agent on routes of bench2drive220.xml, offline.

Only what needs a CARLA server is faked (tests/doubles/fake_carla: client, world, actors, sensors, route scenario);
argument parsing, loading ``agent/automot_agent.py`` by path, AgentWrapper sensor set-up and validation,
SensorInterface, ScenarioManager and its watchdogs, RouteIndexer and StatisticsManager are the upstream code
(found through doubles.paths: $AUTOMOT_SHARED/third_party, default ../shared/third_party). Each route lasts
ROUTE_SECONDS of game time (it ends "Failed - Agent timed out").

* leaderboard-2.0: one process drives routes 1711, 1773, 1790 with SAVE_PATH set.
* bench2drive (fork): the first process dies while loading the 3rd route (a crash between routes), after routes
  1711 and 1773 (the 2nd route gets ``cfg.yaml+save1+save2``); ``--resume`` then drives only route 1790.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from doubles import evaluator_harness as eh

REASON = eh.skip_reason()
if REASON:
    print(f"\nSKIP test_evaluator_integration: {REASON}")
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))

ROUTE_IDS = ["1711", "1773", "1790"]
SUBSET = ",".join(ROUTE_IDS)
METRIC_KEYS = {"acceleration", "angular_velocity", "forward_vector", "right_vector", "location", "rotation"}


@pytest.fixture(scope="module")
def lb2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lb2")
    cfg = eh.agent_yaml(folder)
    proc = eh.run_evaluator(
        "leaderboard-2.0",
        folder,
        SUBSET,
        agent_config=str(cfg),
        checkpoint=folder / "results.json",
        save_path=folder / "save",
        truth_log=folder / "truth.jsonl",
    )
    assert proc.returncode == 0, eh.log_tail(proc)
    return folder, proc


@pytest.fixture(scope="module")
def b2d(tmp_path_factory):
    folder = tmp_path_factory.mktemp("b2d")
    cfg = eh.agent_yaml(folder)
    common = dict(agent_config=str(cfg), checkpoint=folder / "results.json", save_path=folder / "save")
    first = eh.run_evaluator("bench2drive", folder, SUBSET, truth_log=folder / "truth_1.jsonl", die_at_load=3, **common)
    assert first.returncode == 3, eh.log_tail(first)  # the fake simulator died while loading route 3
    shutil.copy(folder / "results.json", folder / "results_after_crash.json")
    second = eh.run_evaluator("bench2drive", folder, SUBSET, truth_log=folder / "truth_2.jsonl", resume=True, **common)
    assert second.returncode == 0, eh.log_tail(second)
    return folder, first, second


def _results(folder: Path, name: str = "results.json") -> dict:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _route_dirs(save: Path) -> list[Path]:
    return sorted((p for p in save.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)


def _truth_by_load(path: Path) -> dict[int, list[dict]]:
    rows: dict[int, list[dict]] = {}
    for row in eh.read_jsonl(path):
        rows.setdefault(row["load"], []).append(row)
    return rows


def _check_drive(route_dir: Path, truth: list[dict]) -> None:
    """Decoded inputs without errors, model-driven controls, the first target point ahead, exact GNSS pose."""
    ticks = eh.read_jsonl(route_dir / "ticks.jsonl")
    assert len(ticks) >= int(eh.ROUTE_SECONDS * 20) - 1
    assert all(t["error"] is None for t in ticks), [t["error"] for t in ticks if t["error"]][:3]
    driving = [t for t in ticks if not t["warmup"]]
    assert driving and all(t["control"]["mode"] not in ("error", "warmup") for t in driving)
    assert all(t["snapshot"]["version"] is not None and t["decision"] for t in driving)  # the model ran
    for t in ticks:
        tp = t["target_points"][0]
        assert tp[0] > 0.0 and abs(tp[1]) < 0.5 * tp[0], tp  # ego frame: x forward

    # The agent's first call sees the frame after AgentWrapper.setup_sensors' 10 warm-up ticks.
    first_listening = next(i for i, row in enumerate(truth) if row["listening"] > 0)
    for step, t in enumerate(ticks):
        true = truth[first_listening + 10 + step]
        err = math.hypot(t["ego"]["x"] - true["x"], t["ego"]["y"] - true["y"])
        assert err < 1e-3, (step, t["ego"], true)  # noise-free GNSS -> local must be exact
        assert abs(math.remainder(t["ego"]["yaw"] - math.radians(true["yaw"]), 2 * math.pi)) < 1e-4


def _check_b2d_outputs(route_dir: Path) -> None:
    metric = json.loads((route_dir / "metric_info.json").read_text(encoding="utf-8"))
    assert metric and all(set(v) == METRIC_KEYS and all(len(v[k]) == 3 for k in METRIC_KEYS) for v in metric.values())
    assert sorted(int(k) for k in metric) == list(range(len(metric)))  # one entry per step, keyed by step
    pngs = sorted((route_dir / "rgb_front").glob("*.png"))
    metas = sorted((route_dir / "meta").glob("*.json"))
    assert pngs and len(pngs) == len(metas) == len(metric)
    meta = json.loads(metas[-1].read_text(encoding="utf-8"))
    assert {"steer", "throttle", "brake", "speed"} <= set(meta)


def _check_statistics(results: dict, route_ids: list[str]) -> None:
    """What leaderboard.utils.statistics_manager writes, for a finished run."""
    assert set(results) == {"_checkpoint", "entry_status", "eligible", "sensors", "values", "labels"}
    assert results["entry_status"] == "Finished" and results["eligible"] is True
    assert results["sensors"] == ["carla_camera", "carla_lidar", "carla_imu", "carla_gnss", "carla_speedometer"]
    cp = results["_checkpoint"]
    assert cp["progress"] == [len(route_ids), len(route_ids)]
    assert [r["route_id"] for r in cp["records"]] == [f"RouteScenario_{i}_rep0" for i in route_ids]
    assert [r["index"] for r in cp["records"]] == list(range(len(route_ids)))
    for record in cp["records"]:
        assert record["status"] == "Failed - Agent timed out", record["status"]
        assert record["infractions"]["route_timeout"] == ["Route timeout."]
        assert abs(record["meta"]["duration_game"] - eh.ROUTE_SECONDS) < 0.11
        assert record["meta"]["route_length"] > 50.0
    assert cp["global_record"]["status"] == "Failed" and len(results["values"]) == len(results["labels"]) == 15


def test_leaderboard2_runs_three_routes_in_one_process(lb2):
    folder, _ = lb2
    results = _results(folder)
    _check_statistics(results, ROUTE_IDS)
    truth = _truth_by_load(folder / "truth.jsonl")
    dirs = _route_dirs(folder / "save")
    assert len(dirs) == len(ROUTE_IDS) == len(truth)
    for load, route_dir in enumerate(dirs, start=1):
        _check_drive(route_dir, truth[load])
        _check_b2d_outputs(route_dir)


def test_bench2drive_save_name_suffixes_accumulate_and_every_route_sets_up(b2d):
    folder, first, _ = b2d
    text = Path(first.log).read_text(encoding="utf-8")
    assert "Could not set up the required agent" not in text
    crashed = _results(folder, "results_after_crash.json")
    records = crashed["_checkpoint"]["records"]
    assert [r["route_id"] for r in records] == ["RouteScenario_1711_rep0", "RouteScenario_1773_rep0"]
    assert crashed["_checkpoint"]["progress"] == [2, 3]
    # Route 2 received cfg.yaml+<save1>+<save2>; the agent wrote under <save2>, the record's save_name.
    for record in records:
        assert (folder / "save" / record["save_name"] / "metric_info.json").is_file(), record["save_name"]


def test_bench2drive_resume_runs_only_the_missing_route(b2d):
    folder, _, _ = b2d
    before = _results(folder, "results_after_crash.json")["_checkpoint"]["records"]
    results = _results(folder)
    _check_statistics(results, ROUTE_IDS)
    records = results["_checkpoint"]["records"]
    for old, new in zip(before, records[:2]):
        assert old["save_name"] == new["save_name"] and old["meta"] == new["meta"]  # not re-run
    first_truth, second_truth = _truth_by_load(folder / "truth_1.jsonl"), _truth_by_load(folder / "truth_2.jsonl")
    assert len(first_truth) == 2 and len(second_truth) == 1  # the resumed process loaded one world: route 1790
    loads = [first_truth[1], first_truth[2], second_truth[1]]
    for record, truth in zip(records, loads):
        assert record["scenario_name"] and record["town_name"] == "Town12"
        assert isinstance(record["weather_id"], str) and record["weather_id"].isdigit()
        assert record["save_name"].startswith(f"{record['route_id']}_Town12_{record['scenario_name']}_")
        route_dir = folder / "save" / record["save_name"]
        _check_drive(route_dir, truth)
        _check_b2d_outputs(route_dir)
