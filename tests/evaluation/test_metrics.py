"""Bench2Drive / leaderboard metrics (automot.evaluation.metrics) on hand-made records; every expected value is
worked out by hand in the test from the definitions in docs/bench2drive-metrics.md."""

from __future__ import annotations

import math

import pytest
from doubles.paths import B2D_ROUTES, HOW_TO_GET, THIRD_PARTY

from automot.evaluation import metrics as M

EMPTY = {k: [] for k in M.INFRACTION_KEYS}


def rec(rid, status="Perfect", rc=100.0, penalty=1.0, length=1000.0, **infractions):
    inf = {**EMPTY, **{k: list(v) for k, v in infractions.items()}}
    return {
        "route_id": f"RouteScenario_{rid}_rep0",
        "status": status,
        "infractions": inf,
        "scores": {"score_route": rc, "score_penalty": penalty, "score_composed": rc * penalty},
        "meta": {"route_length": length, "duration_game": 10.0, "duration_system": 12.0},
    }


def minspeed(*pcts):
    return [f"Average speed is {p}% of the surrounding traffic's one" for p in pcts]


# --------------------------------------------------------------------------------------- success / DS / SR


def test_success_rule():
    assert M.is_success(rec(1, "Perfect"))
    # min-speed entries do not break a success
    assert M.is_success(rec(1, "Completed", min_speed_infractions=minspeed(80)))
    # any other infraction does, even with RC 100
    assert not M.is_success(rec(1, "Completed", penalty=0.6, collisions_vehicle=["hit"]))
    assert not M.is_success(rec(1, "Completed", outside_route_lanes=["Agent went outside ..."]))
    # a failed status is never a success, with or without infractions
    assert not M.is_success(rec(1, "Failed - Agent timed out", rc=40.0))
    assert not M.is_success(rec(1, "Failed", rc=100.0))


def test_driving_score_divides_by_220_and_success_rate():
    records = [
        rec(1, "Perfect"),  # DS 100, success
        rec(2, "Completed", penalty=0.5, collisions_pedestrian=["p"]),  # DS 50, not a success
        rec(3, "Failed - Agent got blocked", rc=25.0),  # DS 25
        rec(4, "Completed", min_speed_infractions=minspeed(50)),  # DS 100, success
    ]
    assert M.driving_score(records) == pytest.approx(275 / 220)  # missing routes count 0
    assert M.success_rate(records) == pytest.approx(2 / 220)
    assert M.driving_score(records, n_routes=4) == pytest.approx(275 / 4)
    assert M.success_rate(records, n_routes=5) == pytest.approx(2 / 5)
    assert M.mean_over_routes(records, "score_route", 5) == pytest.approx((100 + 100 + 25 + 100) / 5)
    assert M.mean_over_routes(records, "score_penalty", 4) == pytest.approx((1 + 0.5 + 1 + 1) / 4)


def test_infractions_per_km_and_global_record():
    outside = "Agent went outside its route lanes for about 123.4 meters (12.34% of the completed route)"
    records = [
        rec(1, "Completed", rc=100.0, penalty=0.36, length=1000.0, collisions_vehicle=["a", "b"]),
        rec(2, "Failed", rc=50.0, length=2000.0, collisions_vehicle=["c"], outside_route_lanes=[outside]),
    ]
    # km driven = 1000/1000*100/100 + 2000/1000*50/100 = 2 km
    assert M.km_driven(records) == pytest.approx(2.0)
    per_km = M.infractions_per_km(records)
    assert per_km["collisions_vehicle"] == pytest.approx(3 / 2)
    assert per_km["outside_route_lanes"] == pytest.approx(0.123)  # km from word 8 of the message, not per km
    assert per_km["red_light"] == 0
    assert M.km_driven([rec(1, rc=0.0)]) == 0.001  # never divides by zero

    glob = M.global_record(records, n_routes=4)
    # means over 4 routes: composed (36 + 50) / 4, route (100 + 50) / 4
    assert glob["scores_mean"]["score_composed"] == pytest.approx(21.5)
    assert glob["scores_mean"]["score_route"] == pytest.approx(37.5)
    # std over the records with the leaderboard's n - 1 = 3: sqrt(((36-21.5)^2 + (50-21.5)^2) / 3)
    assert glob["scores_std_dev"]["score_composed"] == pytest.approx(round(math.sqrt((14.5**2 + 28.5**2) / 3), 3))
    assert glob["status"] == "Failed" and glob["meta"]["exceptions"][0][0] == "RouteScenario_2_rep0"
    assert glob["meta"]["total_length"] == 3000.0
    values, labels = M.leaderboard_values(glob)
    assert labels[0] == "Avg. driving score" and values[0] == "21.5"
    assert labels[4] == "Collisions with vehicles" and values[4] == "1.5"


# ------------------------------------------------------------------------------------------------ efficiency


def test_efficiency_parsing():
    assert M.parse_min_speed_percentage("Average speed is 85.31% of the surrounding traffic's one") == 85.31
    assert M.parse_min_speed_percentage("Average speed is 100% of the surrounding traffic's one") == 100.0
    assert M.parse_min_speed_percentage("garbage") is None
    records = [
        rec(1, min_speed_infractions=minspeed(50, 150, 1200)),  # 1200 % ignored -> (50 + 150) / 2 = 100
        rec(2, min_speed_infractions=minspeed(80.5)),  # 80.5
        rec(3),  # no entry: skipped, not counted as 0
        rec(4, min_speed_infractions=minspeed(5000)),  # every value ignored: skipped
    ]
    assert M.route_efficiency(records[0]) == pytest.approx(100.0)
    assert M.route_efficiency(records[2]) is None
    assert M.driving_efficiency(records) == pytest.approx((100 + 80.5) / 2)
    assert M.driving_efficiency([rec(1)]) is None


# ------------------------------------------------------------------------------------------------ smoothness


def frames(lon=None, lat=None, yaw_rate=None, n=None):
    """metric_info.json dict for a car heading along +x (forward (1,0,0), right (0,1,0))."""
    n = n or len(lon or lat or yaw_rate)
    lon = lon or [0.0] * n
    lat = lat or [0.0] * n
    yaw_rate = yaw_rate or [0.0] * n
    return {
        str(i): {
            "acceleration": [lon[i], lat[i], 0.0],
            "angular_velocity": [0.0, 0.0, yaw_rate[i]],
            "forward_vector": [1.0, 0.0, 0.0],
            "right_vector": [0.0, 1.0, 0.0],
            "location": [float(i), 0.0, 0.0],
            "rotation": [0.0, 0.0, 0.0],
        }
        for i in range(n)
    }


def test_smoothness_segments_of_20_tail_dropped_smoothed_per_segment():
    # 45 steps: segment 0..19 at 1 m/s^2 (inside), 20..39 at 3 m/s^2 (> 2.40: outside), tail 40..44 at 10 m/s^2
    # dropped. Each segment is smoothed on its own, so segment 0 keeps a constant 1.0 (jerk 0) -> 1 of 2 smooth.
    lon = [1.0] * 20 + [3.0] * 20 + [10.0] * 5
    assert M.route_smoothness(frames(lon=lon)) == pytest.approx(0.5)
    # a route of <= 20 steps is one segment; frame keys are sorted as numbers ("10" after "9")
    assert M.route_smoothness(frames(lon=[1.0] * 12)) == 1.0
    assert M.route_smoothness(frames(lon=[1.0] * 11 + [3.0])) == 0.0
    assert M.route_smoothness(frames(lon=[1.0, 1.0])) is None  # too short for polyorder 2
    assert M.route_smoothness({}) is None


def test_smoothness_bounds_one_by_one():
    # longitudinal acceleration below -4.05 brakes too hard
    assert M.route_smoothness(frames(lon=[-4.0] * 10)) == 1.0
    assert M.route_smoothness(frames(lon=[-4.1] * 10)) == 0.0
    # lateral |a| < 4.89
    assert M.route_smoothness(frames(lat=[4.8] * 10)) == 1.0
    assert M.route_smoothness(frames(lat=[-4.9] * 10)) == 0.0
    # longitudinal jerk: a ramp of +0.3 per 0.1 s step is 3 m/s^3 (< 4.13), +0.45 per step is 4.5 (> 4.13)
    assert M.route_smoothness(frames(lon=[0.3 * i for i in range(6)])) == 1.0
    assert M.route_smoothness(frames(lon=[0.45 * i for i in range(6)])) == 0.0
    # yaw rate: the stored z angular velocity as is, |.| < 0.95 (and the "yaw acceleration" is that rate again)
    assert M.route_smoothness(frames(yaw_rate=[0.9] * 10)) == 1.0
    assert M.route_smoothness(frames(yaw_rate=[1.0] * 10)) == 0.0
    # phase unwrap: 2 pi jumps are removed before the bound is applied
    assert M.route_smoothness(frames(yaw_rate=[0.1, 0.1 + 2 * math.pi, 0.1, 0.1, 0.1 - 2 * math.pi])) == 1.0


def test_smoothness_jerk_magnitude():
    # a lateral ramp moves only |a| (lateral jerk has no bound of its own): +0.8 per 0.1 s step is a jerk of
    # 8 m/s^3 (< 8.37) with lat <= 4.0; -0.9 per step gives |a| rising by 0.9 per step: 9 m/s^3 (> 8.37)
    assert M.route_smoothness(frames(lat=[0.8 * i for i in range(6)])) == 1.0
    assert M.route_smoothness(frames(lat=[-0.9 * i for i in range(5)])) == 0.0


def test_smoothness_mean_over_routes():
    assert M.smoothness([0.5, 1.0, None]) == pytest.approx(0.75)
    assert M.smoothness([None]) is None


# ----------------------------------------------------------------------------------------------- abilities

ROUTES_XML = """<?xml version="1.0"?>
<routes>
  <route id="10" town="Town01"><waypoints><position x="0" y="0" z="0"/><position x="10" y="0" z="0"/></waypoints>
    <scenarios><scenario name="a" type="ParkedObstacle"/></scenarios></route>
  <route id="11" town="Town01"><waypoints><position x="0" y="0" z="0"/></waypoints>
    <scenarios><scenario name="b" type="SignalizedJunctionLeftTurn"/><scenario name="c" type="Accident"/></scenarios>
  </route>
  <route id="12" town="Town02"><scenarios><scenario name="d" type="YieldToEmergencyVehicle"/></scenarios></route>
  <route id="13" town="Town02"><scenarios><scenario name="e" type="PedestrianCrossing"/></scenarios></route>
  <route id="14" town="Town03"><scenarios><scenario name="f" type="HardBreakRoute"/></scenarios></route>
</routes>
"""


@pytest.fixture
def routes(tmp_path):
    path = tmp_path / "routes.xml"
    path.write_text(ROUTES_XML)
    return M.parse_routes_xml(path)


def test_route_xml_and_ability_lookup(routes):
    assert [r.id for r in routes] == ["10", "11", "12", "13", "14"]
    assert routes[0].keypoints == [(0.0, 0.0, 0.0), (10.0, 0.0, 0.0)] and routes[0].town == "Town01"
    assert routes[0].abilities == ["Overtaking"]
    # the FIRST scenario's type decides; a type in two lists counts in both
    assert routes[1].abilities == ["Merging", "Traffic_Signs"]
    assert routes[3].abilities == ["Emergency_Brake", "Traffic_Signs"]
    assert M.xml_route_id({"route_id": "RouteScenario_1711_rep0"}) == "1711"


def ability_records():
    return [
        rec(99),  # not in the route file: ignored
        rec(13, "Completed", penalty=0.7, red_light=["ran a red light"]),  # failed, red light
        rec(12, "Perfect"),
        rec(11, "Failed - Agent got blocked", rc=60.0),  # failed, no red light / stop
        rec(10, "Completed", min_speed_infractions=minspeed(90)),  # success
        rec(10, "Failed", rc=0.0),  # a later record of route 10: the first match is used
        # route 14 has no record: crashed, left out of its ability's denominator
    ]


def test_ability_scores_without_maps(routes):
    res = M.ability_scores(ability_records(), routes)
    s = res["scores"]
    # Overtaking: route 10 success -> 1/1; Merging: route 11 failed -> 0/1; Give_Way: route 12 -> 1/1
    # Emergency_Brake: route 13 failed (14 crashed, not counted) -> 0/1; Traffic_Signs: 11, 13 failed -> 0/2
    assert s == {
        "Overtaking": 1.0,
        "Merging": 0.0,
        "Emergency_Brake": 0.0,
        "Give_Way": 1.0,
        "Traffic_Signs": 0.0,
        "mean": pytest.approx((1 + 0 + 0 + 1 + 0) / 5),
        "crashed": 1,
    }
    assert res["crashed_routes"] == ["14"]
    assert res["counts"]["Traffic_Signs"] == {"success": 0, "routes": 2}
    assert res["traffic_sign_partial_credit"] is False
    assert any("CARLA OpenDRIVE maps are not available" in n for n in res["notes"])


def test_traffic_signs_partial_credit(routes):
    # first junction waypoint k = 10 (1-based) of n = 100: credit when RC/100 > (10 + 8) / 100 = 0.18
    res = M.ability_scores(ability_records(), routes, junction_fn=lambda route: (10, 100))
    s = res["scores"]
    # route 11: failed, RC 0.60 > 0.18, no red light / stop -> counts for Traffic_Signs (only);
    # route 13: RC 1.0 but it ran a red light -> no credit. Traffic_Signs 1/2; Merging stays 0/1.
    assert s["Traffic_Signs"] == pytest.approx(0.5)
    assert s["Merging"] == 0.0
    assert s["mean"] == pytest.approx((1 + 0 + 0 + 1 + 0.5) / 5)
    assert res["partial_credit_routes"] == 1 and res["notes"] == []
    # RC exactly at the threshold is not enough (strictly greater), nor a route without junction
    r = rec(11, "Failed", rc=18.0)
    assert not M.traffic_sign_partial_credit(r, (10, 100))
    assert M.traffic_sign_partial_credit(rec(11, "Failed", rc=18.5), (10, 100))
    assert not M.traffic_sign_partial_credit(rec(11, "Failed", rc=90.0, stop_infraction=["ran a stop"]), (10, 100))
    assert not M.traffic_sign_partial_credit(r, None)


def test_ability_without_routes_is_none_and_left_out_of_mean(routes):
    res = M.ability_scores([rec(10)], routes[:1])
    assert res["scores"]["Overtaking"] == 1.0 and res["scores"]["Merging"] is None
    assert res["scores"]["mean"] == 1.0
    assert any("without routes" in n for n in res["notes"])


def test_carla_junction_index_unavailable_without_maps(tmp_path, monkeypatch):
    monkeypatch.delenv("CARLA_ROOT", raising=False)
    assert M.carla_junction_index(None) is None
    assert M.carla_junction_index(tmp_path) is None  # no CarlaUE4/Content/Carla/Maps/OpenDrive there


def test_real_bench2drive_routes_map_to_abilities():
    path = B2D_ROUTES / "bench2drive220.xml"
    if not path.is_file():
        pytest.skip(f"{path} not present: {HOW_TO_GET}")
    routes = M.parse_routes_xml(path)
    assert len(routes) == 220 and len({r.id for r in routes}) == 220
    assert all(r.abilities for r in routes)  # every scenario type of the benchmark has an ability
    counts = {name: sum(name in r.abilities for r in routes) for name in M.ABILITIES}
    assert counts["Give_Way"] == 10 and sum(counts.values()) > 220  # some routes count in two abilities


# A straight one-lane road through a junction: road 1 (x 0..50), connecting road 2 inside junction 100 (x 50..60),
# road 3 (x 60..110); the driving lane -1 lies at CARLA y = +1.75 (OpenDRIVE's y is flipped).
_MARK = '<roadMark sOffset="0" type="solid" weight="standard" color="standard" width="0.15" laneChange="none"/>'
_LANE = '<width sOffset="0" a="3.5" b="0" c="0" d="0"/>' + _MARK


def _road(rid, x, length, junction, link, lane_link):
    return (
        f'<road name="r{rid}" length="{length}" id="{rid}" junction="{junction}"><link>{link}</link>'
        f'<planView><geometry s="0" x="{x}" y="0" hdg="0" length="{length}"><line/></geometry></planView>'
        f'<lanes><laneSection s="0"><center><lane id="0" type="none" level="false">{_MARK}</lane></center>'
        f'<right><lane id="-1" type="driving" level="false"><link>{lane_link}</link>{_LANE}</lane></right>'
        "</laneSection></lanes></road>"
    )


XODR = (
    '<?xml version="1.0" standalone="yes"?><OpenDRIVE>'
    '<header revMajor="1" revMinor="4" name="TestTown" version="1" north="0" south="0" east="0" west="0"/>'
    + _road(1, 0, 50, -1, '<successor elementType="junction" elementId="100"/>', '<successor id="-1"/>')
    + _road(
        2,
        50,
        10,
        100,
        '<predecessor elementType="road" elementId="1" contactPoint="end"/>'
        '<successor elementType="road" elementId="3" contactPoint="start"/>',
        '<predecessor id="-1"/><successor id="-1"/>',
    )
    + _road(3, 60, 50, -1, '<predecessor elementType="junction" elementId="100"/>', '<predecessor id="-1"/>')
    + '<junction id="100" name="j"><connection id="0" incomingRoad="1" connectingRoad="2" contactPoint="start">'
    '<laneLink from="-1" to="-1"/></connection></junction></OpenDRIVE>'
)


def test_traffic_signs_partial_credit_with_a_real_carla_map(tmp_path, monkeypatch):
    """carla_junction_index on an OpenDRIVE map through the carla client's Map and the CARLA PythonAPI's
    GlobalRoutePlanner (no server): the first junction waypoint of the 1 m densified route sits at x = 50."""
    pytest.importorskip("carla", reason="the CARLA client is an optional extra: pip install -e .[carla]")
    api = THIRD_PARTY / "carla_pythonapi"
    if not (api / "agents" / "navigation" / "global_route_planner.py").is_file():
        pytest.skip(f"CARLA PythonAPI agents not found under {api}: {HOW_TO_GET}")
    monkeypatch.syspath_prepend(str(api))
    root = tmp_path / "carla"
    maps = root / "CarlaUE4" / "Content" / "Carla" / "Maps" / "OpenDrive"
    maps.mkdir(parents=True)
    (maps / "TestTown.xodr").write_text(XODR)
    fn = M.carla_junction_index(root)
    assert fn is not None
    route = M.RouteSpec("20", "TestTown", ["PedestrianCrossing"], [(1.0, 1.75, 0.0), (100.0, 1.75, 0.0)])
    k, n = fn(route)
    # ~1 m spacing from x = 1 to x = 100: about 99 waypoints, the first inside the junction about the 49th
    assert 47 <= k <= 51 and 95 <= n <= 103
    assert fn(M.RouteSpec("21", "Town99", [], [(0, 0, 0), (1, 0, 0)])) is None  # no map for that town
    # the rule end to end: (k + 8) / n is about 0.58 -> RC 40 % gets no credit, RC 80 % does
    res_low = M.ability_scores([rec(20, "Failed", rc=40.0)], [route], junction_fn=fn)
    res_high = M.ability_scores([rec(20, "Failed", rc=80.0)], [route], junction_fn=fn)
    assert res_low["scores"]["Traffic_Signs"] == 0.0 and res_high["scores"]["Traffic_Signs"] == 1.0
    assert res_high["scores"]["Emergency_Brake"] == 0.0  # partial credit is for Traffic_Signs only
