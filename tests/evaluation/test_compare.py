"""`automot eval compare A B`: paired differences (B minus A) between two hand-made evaluation folders, with the
expected mean, bootstrap interval and sign-flip p-value worked out by hand in each test."""

from __future__ import annotations

import json
import shutil

import pytest
from doubles import eval_compare_fixture as F

from automot.errors import UsageError
from automot.evaluation.compare import compare_folders, write_compare


def _pair(tmp_path, ds_a, ds_b, seeds=(0,), ok_a=None, ok_b=None):
    rids = [str(101 + i) for i in range(len(ds_a) // len(seeds))]
    xml = F.route_xml(tmp_path, rids)
    keys = [(r, s) for r in rids for s in seeds]
    ok_a = ok_a or [True] * len(keys)
    ok_b = ok_b or [True] * len(keys)
    a = F.build(tmp_path, "A", {k: (d, o) for k, d, o in zip(keys, ds_a, ok_a)}, xml)
    b = F.build(tmp_path, "B", {k: (d, o) for k, d, o in zip(keys, ds_b, ok_b)}, xml)
    return a, b


def test_mean_and_exact_sign_flip_p_value_by_hand(tmp_path):
    # 4 routes, one seed: ΔDS per route = -10, -20, -30, +5 -> mean -55 / 4 = -13.75.
    # The 16 sign patterns of (10, 20, 30, 5): |sum| >= 55 only for +-(10+20+30+5) = 65 and +-(10+20+30-5) = 55,
    # so p = 4 / 16 = 0.25.
    a, b = _pair(tmp_path, [50, 60, 70, 80], [40, 40, 40, 85], ok_b=[True, True, False, True])
    res = compare_folders(a, b)
    d = res["delta"]["DS"]
    assert d["mean"] == pytest.approx(-13.75)
    assert d["p_value"] == pytest.approx(0.25)
    assert res["routes"] == 4
    # route 103 went from success to failure: ΔSR = (0 - 100) / 4 = -25 points; its RC dropped 100 -> 40 (B's RC
    # of a failed job is its DS): ΔRC = -60 / 4 = -15
    assert res["delta"]["SR"]["mean"] == pytest.approx(-25.0)
    assert res["delta"]["RC"]["mean"] == pytest.approx(-15.0)
    assert res["flips"] == {"to_failure": ["103_seed0"], "to_success": []}
    assert [r["route_id"] for r in res["per_route"]] == ["103", "102", "101", "104"]  # regressions first
    assert {(r["route_id"], r["seed"], r["ds_a"], r["ds_b"]) for r in res["per_route"]} == {
        ("101", 0, 50.0, 40.0), ("102", 0, 60.0, 40.0), ("103", 0, 70.0, 40.0), ("104", 0, 80.0, 85.0)
    }  # fmt: skip
    assert res["method"]["resampling_unit"].startswith("route") and res["method"]["rng_seed"] is not None
    # per ability: the fixture's scenario types put route 101 (ParkedObstacle) in Overtaking, 102 (HardBreakRoute)
    # in Emergency_Brake; no success changed on either
    assert res["delta"]["abilities"]["Overtaking"]["mean"] == 0.0
    # regressions triage: DS lost = -ΔDS / 4 paired jobs per group; 103 (SignalizedJunctionLeftTurn) failed in B
    # with vehicle_blocked (-30 -> 7.5), 101 and 102 (ParkedObstacle -10, HardBreakRoute -20) have no infraction
    tri = res["triage"]
    assert tri["by_first_infraction_b"] == [
        {"group": "no infraction", "jobs": 2, "ds_lost": 7.5},
        {"group": "vehicle_blocked", "jobs": 1, "ds_lost": 7.5},
    ]
    assert [(g["group"], g["ds_lost"]) for g in tri["by_scenario"]] == [
        ("SignalizedJunctionLeftTurn", 7.5), ("HardBreakRoute", 5.0), ("ParkedObstacle", 2.5)
    ]  # fmt: skip


def test_bootstrap_interval_resamples_routes_with_their_seeds(tmp_path):
    # 4 routes x 2 seeds; only route 101 changes, by -20 on both seeds: mean ΔDS = -40 / 8 = -5.
    # Resampling 4 routes with replacement, the mean is -5 k with k ~ Binomial(4, 1/4) copies of route 101:
    # P(k >= 3) = 13/256 = 0.051 > 0.025 > P(k = 4) = 1/256, so the 2.5 % quantile is -15; P(k = 0) = 81/256 > 0.025,
    # so the 97.5 % quantile is 0. CI = [-15, 0]. (Resampling the 8 jobs independently would give [-12.5, 0]:
    # k ~ Binomial(8, 1/4), P(k >= 5) = 0.027.) Sign flips: one non-zero route sum (-40) -> every pattern ties, p = 1.
    ds_a = [60, 60, 70, 70, 80, 80, 90, 90]
    ds_b = [40, 40, 70, 70, 80, 80, 90, 90]
    a, b = _pair(tmp_path, ds_a, ds_b, seeds=(0, 1))
    d = compare_folders(a, b)["delta"]["DS"]
    assert d["mean"] == pytest.approx(-5.0)
    assert d["ci95"] == pytest.approx([-15.0, 0.0])
    assert d["p_value"] == pytest.approx(1.0)
    assert d["routes"] == 4 and d["jobs"] == 8


def test_identical_folders_show_no_difference(tmp_path):
    a, _ = _pair(tmp_path, [50, 60, 70, 80], [50, 60, 70, 80])
    same = tmp_path / "A_copy"
    shutil.copytree(a, same)
    res = compare_folders(a, same)
    assert res["delta"]["DS"]["mean"] == 0.0 and res["delta"]["DS"]["ci95"] == [0.0, 0.0]
    assert res["delta"]["DS"]["p_value"] == 1.0
    assert res["verdict"].startswith("no detectable difference")
    assert res["flips"] == {"to_failure": [], "to_success": []}


def test_planted_regression_on_30_percent_of_routes_is_flagged(tmp_path):
    # 20 routes x 2 seeds; B loses 40 DS (and success) on routes 0, 3, 6, ... 15 (6 of 20 = 30 %), elsewhere it
    # moves by +-1.5 (seed noise). Expected mean ΔDS = 6 * 2 * -40 / 40 = -12 (the +-1.5 cancel pairwise).
    n = 20
    rids = [str(200 + i) for i in range(n)]
    xml = F.route_xml(tmp_path, rids)
    bad = {rids[i] for i in range(0, 18, 3)}
    assert len(bad) == 6
    ja, jb = {}, {}
    for i, r in enumerate(rids):
        for s in (0, 1):
            base = 60.0 + (i * 7) % 35 + 2 * s
            ja[(r, s)] = (base, True)
            jb[(r, s)] = (base - 40.0, False) if r in bad else (base + (1.5 if s == 0 else -1.5), True)
    a, b = F.build(tmp_path, "A", ja, xml), F.build(tmp_path, "B", jb, xml)
    res = compare_folders(a, b)
    d = res["delta"]["DS"]
    assert d["mean"] == pytest.approx(-12.0)
    assert d["ci95"][1] < 0.0  # the interval excludes 0
    assert d["p_value"] < 0.05  # Monte Carlo over sign patterns (20 routes > the exact limit)
    assert res["verdict"].startswith("B worse than A")
    assert sorted(res["flips"]["to_failure"]) == sorted(f"{r}_seed{s}" for r in bad for s in (0, 1))
    assert {r["route_id"] for r in res["per_route"][:12]} == bad


def test_different_route_sets_are_refused_unless_intersect(tmp_path):
    rids = ["101", "102", "103"]
    xml = F.route_xml(tmp_path, rids)
    a = F.build(tmp_path, "A", {(r, 0): (80.0, True) for r in rids}, xml)
    b = F.build(tmp_path, "B", {(r, 0): (70.0, True) for r in rids[:2]}, F.route_xml(tmp_path, rids[:2], "b.xml"))
    with pytest.raises(UsageError, match="different routes.*--intersect"):
        compare_folders(a, b)
    res = compare_folders(a, b, intersect=True)
    assert res["routes"] == 2 and res["delta"]["DS"]["mean"] == pytest.approx(-10.0)
    assert res["left_out"] == ["103_seed0"]


def test_written_files_follow_the_contract(tmp_path):
    a, b = _pair(tmp_path, [50, 60, 70, 80], [40, 40, 40, 85])
    res = compare_folders(a, b, out=tmp_path / "C")
    written = write_compare(res, tmp_path / "C")
    data = json.loads(written["json"].read_text())
    for key in ("routes", "delta", "flips", "per_route", "method", "verdict"):
        assert key in data
    for metric in ("DS", "SR", "RC"):
        assert set(data["delta"][metric]) >= {"mean", "ci95", "p_value"}
    assert set(data["per_route"][0]) >= {"route_id", "seed", "ds_a", "ds_b"}
    md = written["markdown"].read_text()
    assert "Verdict" in md and "-13.75" in md
    assert written["html"].read_text().startswith("<!DOCTYPE html>")


def test_command_line_prints_json_and_refuses_different_routes(tmp_path, capsys):
    from automot.cli import main

    a, b = _pair(tmp_path, [50, 60, 70, 80], [40, 40, 40, 85])
    assert main(["eval", "compare", str(a), str(b), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["delta"]["DS"]["mean"] == pytest.approx(-13.75) and data["delta"]["DS"]["p_value"] == 0.25
    assert main(["eval", "compare", str(a), str(b), "--out", str(tmp_path / "C")]) == 0
    printed = capsys.readouterr().out
    assert "verdict: " in printed and (tmp_path / "C" / "compare.html").is_file()
    shutil.rmtree(b / "routes" / "104_seed0")
    assert main(["eval", "report", str(b)]) == 0  # B's merge now lacks route 104 (missing, scored 0)
    capsys.readouterr()
    other = F.build(tmp_path, "D", {("101", 0): (10.0, True)}, F.route_xml(tmp_path, ["101"], "d.xml"))
    assert main(["eval", "compare", str(a), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("automot eval compare: error: ") and "--intersect" in err and len(err.splitlines()) == 1
    assert main(["eval", "compare", str(a), str(other), "--intersect", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["routes"] == 1
    assert main(["eval", "compare", str(a), str(tmp_path / "nowhere")]) == 2
