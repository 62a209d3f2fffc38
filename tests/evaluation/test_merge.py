"""merge_eval (exactly the route file's set, in its order; missing routes listed and scored 0), route ids from a
route XML, the first-infraction time, and the report files (automot.evaluation.merge / report)."""

from __future__ import annotations

import json
import math

import pytest

from automot.errors import ConfigError, UsageError
from automot.evaluation import merge as merge_mod
from automot.evaluation.merge import merge_eval, route_ids_from_xml
from automot.evaluation.report import format_progress, report_main, summary_rows, write_report
from automot.world.leaderboard_record import INFRACTION_KEYS

XML = """<routes>
  <route id="3" town="Town01"><scenarios><scenario name="a" type="ParkedObstacle"/></scenarios></route>
  <route id="1" town="Town01"><scenarios><scenario name="b" type="HardBreakRoute"/></scenarios></route>
  <route id="2" town="Town02"><scenarios><scenario name="c" type="InvadingTurn"/></scenarios></route>
  <route id="7" town="Town02"><scenarios><scenario name="d" type="YieldToEmergencyVehicle"/></scenarios></route>
</routes>
"""


def record(rid, status, rc, penalty, length=500.0, rep=0, **infractions):
    return {
        "index": 5,
        "route_id": f"RouteScenario_{rid}_rep{rep}",
        "scenario_name": f"scn{rid}",
        "weather_id": "1",
        "save_name": f"save_{rid}",
        "town_name": "Town01",
        "status": status,
        "num_infractions": sum(len(v) for v in infractions.values()),
        "infractions": {**{k: [] for k in INFRACTION_KEYS}, **infractions},
        "scores": {"score_route": rc, "score_penalty": penalty, "score_composed": round(rc * penalty, 6)},
        "meta": {"route_length": length, "duration_game": 20.0, "duration_system": 25.0},
    }


def checkpoint(*records):
    return {"_checkpoint": {"global_record": {}, "progress": [1, 1], "records": list(records)}, "sensors": ["rgb"]}


@pytest.fixture
def eval_dir(tmp_path):
    out = tmp_path / "eval"
    routes = out / "routes"
    # route 3: completed with a collision at (x=10, y=0); ticks.jsonl puts the ego there at t = 1.5 s; a video
    r3 = routes / "3"
    r3.mkdir(parents=True)
    hit = "Agent collided against object with type=vehicle.audi and id=7 at (x=10.0, y=0.0, z=0.0)"
    (r3 / "results.json").write_text(
        json.dumps(checkpoint(record(3, "Completed", 100.0, 0.6, collisions_vehicle=[hit])))
    )
    ticks = [{"frame": i, "sim_time": 0.5 * i, "ego": {"x": 3.0 * i, "y": 0.0, "yaw": 0.0}} for i in range(8)]
    ticks[3]["ego"]["x"] = 10.2  # closest to the collision point
    (r3 / "ticks.jsonl").write_text("\n".join(json.dumps(t) for t in ticks) + "\n{cut")
    (r3 / "video.mp4").write_bytes(b"\x00")
    (r3 / "record.json").write_text(json.dumps({"attempts": 1, "failure_reason": None}))
    # route 1: perfect; metric_info.json in its save_name sub-folder
    r1 = routes / "1"
    (r1 / "save_1").mkdir(parents=True)
    (r1 / "results.json").write_text(json.dumps(checkpoint(record(1, "Perfect", 100.0, 1.0, length=1000.0))))
    info = {
        str(i): {
            "acceleration": [1.0, 0.0, 0.0],
            "angular_velocity": [0.0, 0.0, 0.0],
            "forward_vector": [1.0, 0.0, 0.0],
            "right_vector": [0.0, 1.0, 0.0],
            "location": [i, 0, 0],
            "rotation": [0, 0, 0],
        }
        for i in range(10)
    }
    (r1 / "save_1" / "metric_info.json").write_text(json.dumps(info))
    # route 2: crashed after retries, recorded by the workers with score 0 and the reason; plus a broken json
    r2 = routes / "2"
    r2.mkdir(parents=True)
    crashed = record(2, "Failed - Simulation crashed", 0.0, 1.0)
    crashed["meta"]["failure_reason"] = "simulator died 3 times"
    (r2 / "results.json").write_text(json.dumps(checkpoint(crashed)))
    (r2 / "broken.json").write_text("{not json")
    # route 7: no folder at all -> missing; route 9: a folder not in the route file -> ignored
    (routes / "9").mkdir()
    (routes / "9" / "results.json").write_text(json.dumps(checkpoint(record(9, "Perfect", 100.0, 1.0))))
    xml = tmp_path / "routes.xml"
    xml.write_text(XML)
    return out, xml


def test_route_ids_from_xml(tmp_path, eval_dir):
    _, xml = eval_dir
    assert route_ids_from_xml(xml) == ["3", "1", "2", "7"]
    dup = tmp_path / "dup.xml"
    dup.write_text('<routes><route id="1"/><route id="1"/></routes>')
    with pytest.raises(ConfigError, match="repeats route ids: 1"):
        route_ids_from_xml(dup)
    with pytest.raises(ConfigError, match="not found"):
        route_ids_from_xml(tmp_path / "nope.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<routes>")
    with pytest.raises(ConfigError, match="cannot parse"):
        route_ids_from_xml(bad)


def test_merge_exact_set_order_and_missing(eval_dir):
    out, xml = eval_dir
    summary = merge_eval(out, route_ids_from_xml(xml), routes_xml=xml)
    results = json.loads((out / "results.json").read_text())
    merged = json.loads((out / "merged.json").read_text())

    # exactly the route file's set in its order (9 ignored, 7 missing and listed)
    ids = [r["route_id"] for r in results["_checkpoint"]["records"]]
    assert ids == ["RouteScenario_3_rep0", "RouteScenario_1_rep0", "RouteScenario_2_rep0"]
    assert [r["index"] for r in results["_checkpoint"]["records"]] == [0, 1, 2]
    assert [r["route_id"] for r in merged["_checkpoint"]["records"]] == ids
    assert all("index" not in r for r in merged["_checkpoint"]["records"])
    assert summary["missing"] == ["7"] and merged["missing"] == ["7"] and results["missing"] == ["7"]
    assert summary["extra"] == ["9"] and summary["unreadable"] == ["routes/2/broken.json"]

    # DS over the 4 routes of the file (missing = 0): (60 + 100 + 0 + 0) / 4; Bench2Drive's keys divide by 220
    assert summary["driving_score"] == pytest.approx(40.0)
    assert summary["success_rate"] == pytest.approx(1 / 4)
    assert summary["route_completion"] == pytest.approx(50.0)
    assert summary["infraction_penalty"] == pytest.approx((0.6 + 1.0 + 1.0) / 4)
    assert merged["driving score"] == pytest.approx(160 / 220)
    assert merged["success rate"] == pytest.approx(1 / 220)
    assert merged["eval num"] == 3 and merged["route_count"] == 4
    assert results["_checkpoint"]["progress"] == [3, 4]
    assert results["_checkpoint"]["global_record"]["scores_mean"]["score_composed"] == pytest.approx(40.0)
    assert results["entry_status"] == "Crashed" and results["eligible"] is False
    assert results["sensors"] == ["rgb"]
    assert results["labels"][0] == "Avg. driving score" and results["values"][0] == "40.0"
    # km = 0.5 * 1 + 1.0 * 1 + 0.5 * 0 = 1.5 -> one vehicle collision = 0.667 per km
    assert summary["infractions_per_km"]["collisions_vehicle"] == pytest.approx(0.667)
    assert summary["smoothness"] == 1.0  # only route 1 has metric_info.json (constant 1 m/s^2)
    # abilities from the route file: Overtaking (3) failed, Emergency_Brake (1) success, Give_Way (2 failed, 7 crashed)
    ab = summary["abilities"]["scores"]
    assert ab["Overtaking"] == 0.0 and ab["Emergency_Brake"] == 1.0 and ab["Give_Way"] == 0.0
    assert ab["crashed"] == 1

    rows = {r["folder"]: r for r in summary["routes"]}
    assert list(rows) == ["3", "1", "2", "7"]
    assert rows["3"]["first_infraction"] == "collisions_vehicle" and rows["3"]["first_infraction_time"] == 1.5
    assert rows["3"]["video"] == "routes/3/video.mp4" and rows["1"]["video"] is None
    assert rows["2"]["failure_reason"] == "simulator died 3 times" and rows["2"]["ds"] == 0.0
    assert rows["7"]["missing"] and rows["7"]["status"].startswith("Missing")
    # written atomically: no temporary left
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_merge_repetitions_and_started_records(tmp_path):
    out = tmp_path / "e"
    (out / "routes" / "5").mkdir(parents=True)
    started = record(5, "Started", 0.0, 0.0, rep=1)  # the evaluator died inside rep 1: not a finished record
    (out / "routes" / "5" / "a.json").write_text(json.dumps(checkpoint(record(5, "Perfect", 100.0, 1.0), started)))
    summary = merge_eval(out, ["5"], repetitions=2)
    assert summary["missing"] == ["RouteScenario_5_rep1"]
    assert summary["driving_score"] == pytest.approx(50.0)
    assert any("multi-ability scores need the route XML" in n for n in summary["notes"])
    with pytest.raises(ConfigError):
        merge_eval(out, ["5", "5"])


def test_first_infraction_time_rules():
    ticks = [(0.5 * i, 3.0 * i, 0.0) for i in range(5)]
    t = merge_mod.infraction_time
    assert t("Agent ran a red light 12 at (x=6.1, y=0.5, z=0.0)", "red_light", ticks) == 1.0
    assert t("Agent ran a red light 12 at (x=500.0, y=0.0, z=0.0)", "red_light", ticks) is None  # too far
    assert t("Route timeout.", "route_timeout", ticks) == 2.0  # the end of the route
    assert t("Agent timed out a scenario", "scenario_timeouts", ticks) is None
    assert t("at (x=0, y=0, z=0)", "collisions_layout", []) is None
    rec = {"infractions": {"scenario_timeouts": ["Agent timed out a scenario"], "red_light": ["at (x=9, y=0, z=0)"]}}
    # a timed infraction comes before an untimed one
    assert merge_mod.first_infraction(rec, ticks) == ("red_light", "at (x=9, y=0, z=0)", 1.5)


def test_report_files_and_progress(eval_dir):
    out, xml = eval_dir
    summary = merge_eval(out, route_ids_from_xml(xml), routes_xml=xml)
    written = write_report(out)
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    rows = dict(summary_rows(summary))
    assert rows["Driving score"] == "40.00" and rows["Success rate"] == "25.00%"
    assert "| Driving score | 40.00 |" in md and "[video](routes/3/video.mp4)" in md
    assert 'href="routes/3/video.mp4"' in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for path in written["plots"].values():
        assert path.is_file() and path.read_bytes().startswith(b"\x89PNG")
        assert f"report_files/{path.name}" in md
    assert md.count("routes have no record") == 1 and "1 of 4 routes have no record and score 0: 7" in md
    # report_main re-merges from what merged.json recorded (route set, route file)
    assert report_main(out) == 0
    assert json.loads((out / "merged.json").read_text())["route_ids"] == ["3", "1", "2", "7"]
    with pytest.raises(UsageError):
        report_main(out / "nope")
    assert format_progress(12, 2, 1, 45.312, 3720, total=220) == (
        "routes 12/220 done, 2 running, 1 failed | DS so far 45.31 | ETA 1h02m"
    )
    assert format_progress(0, 0, 0, None, None) == "routes 0 done, 0 running, 0 failed | DS so far -- | ETA --"


def test_embedded_seed_folders_mean_and_std(tmp_path):
    out = tmp_path / "emb"
    ds = {"merge_seed0": 100.0, "merge_seed1": 50.0, "lane_seed0": 80.0, "lane_seed1": 20.0}
    for folder, value in ds.items():
        (out / "routes" / folder).mkdir(parents=True)
        rid = 2 if folder.startswith("merge") else 0
        r = record(rid, "Perfect" if value == 100.0 else "Failed", value, 1.0)
        (out / "routes" / folder / "results.json").write_text(json.dumps(checkpoint(r)))
    summary = merge_eval(out, list(ds))
    seeds = summary["seeds"]
    # merge: (100 + 50) / 2 = 75, sample std sqrt((25^2 + 25^2) / 1) = 35.355; lane: 50 +- 42.426
    assert seeds["routes"]["merge"]["ds_mean"] == pytest.approx(75.0)
    assert seeds["routes"]["merge"]["ds_std"] == pytest.approx(math.sqrt(2 * 25.0**2))
    assert seeds["routes"]["lane"]["ds_std"] == pytest.approx(math.sqrt(2 * 30.0**2))
    assert seeds["routes"]["merge"]["success"] == 0.5
    # DS per seed over its routes: seed 0 (100 + 80) / 2 = 90, seed 1 (50 + 20) / 2 = 35 -> 62.5 +- 38.891
    assert seeds["ds_per_seed"] == {"0": 90.0, "1": 35.0}
    assert seeds["ds_mean"] == pytest.approx(62.5) and seeds["ds_std"] == pytest.approx(math.sqrt(2 * 27.5**2))
    write_report(out)
    md = (out / "report.md").read_text()
    assert "| merge | 2 | 75.00 ± 35.36 |" in md and "| all routes (DS per seed) | 2 | 62.50 ± 38.89 |" in md
    assert "merge_seed0 (RouteScenario_2_rep0)" in md
    assert merge_eval(tmp_path / "none", ["1"])["seeds"] is None


def test_min_speed_readings_are_reported_apart_from_infractions(tmp_path):
    """Min-speed entries are readings (their mean is the driving efficiency), not infractions: the report's
    infractions table has no row for them and one line counts them."""
    from doubles import eval_report_fixture

    out, xml = eval_report_fixture.build_eval_dir(tmp_path)
    merge_eval(out, route_ids_from_xml(xml), routes_xml=xml)
    write_report(out)
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    table = md.split("## Infractions", 1)[1].split("## Routes", 1)[0]
    assert "| min_speed_infractions |" not in table and "| collisions_vehicle | 1 |" in table
    # by hand from the fixture's ROUTES: one reading per recorded route with RC > 0 = 101-105 and 107 (106 has RC 0,
    # 108 no record) -> 6
    assert "Min-speed readings (not infractions): 6;" in table
    assert 'id="min-speed">Min-speed readings (not infractions): 6;' in page and ">min_speed_infractions<" not in page
