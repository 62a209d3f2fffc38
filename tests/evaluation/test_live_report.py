"""The live report (issue 21.5) and the over-seed files (issue 21.1): after every recorded route the engine calls
`LiveReport`, which rewrites report.md / report.html / summary.json (atomically) with the run's state and the DS so
far with its interval, and writes TensorBoard scalars under DIR/tb/; with seeds, each seed gets its own official
results.json / merged.json under DIR/seeds/seed<k>/."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from doubles import eval_compare_fixture as F

from automot.evaluation import live


def _progress(done, total, running, failed=0):
    return SimpleNamespace(done=done, total=total, running=running, failed=failed, started=0.0, finished_this_run=done)


def test_live_report_between_two_routes(tmp_path):
    # 3 routes x 1 seed planned; two are recorded (DS 80 and 40), the third is running.
    xml = F.route_xml(tmp_path, ["101", "102", "103"])
    out = F.build(tmp_path, "eval", {("101", 0): (80.0, True), ("102", 0): (40.0, False)}, xml)
    ids = ["101_seed0", "102_seed0", "103_seed0"]
    report = live.LiveReport(out, ids, routes_xml=str(xml))
    state = report(None, _progress(2, 3, 1))
    md = (out / "report.md").read_text()
    assert "running: 2/3 routes done, 1 running, 0 failed" in md
    # DS so far over the 2 routes done: (80 + 40) / 2 = 60; two routes -> CI [40, 80] (the route means)
    assert "60.00 [40.00, 80.00] over the 2 routes done" in md
    assert "60.00 [40.00, 80.00]" in (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "running" and summary["done"] == 2 and summary["total"] == 3
    assert summary["so_far"]["DS"]["mean"] == pytest.approx(60.0)
    assert state["eta_s"] is not None
    assert list((out / "tb").glob("events.out.tfevents.*"))  # the TensorBoard scalars
    report.close()

    # the third route arrives: the files are rewritten (the DS so far moves)
    F.build(tmp_path, "more", {("103", 0): (20.0, False)}, xml)
    (tmp_path / "more" / "routes" / "103_seed0").rename(out / "routes" / "103_seed0")
    report(None, _progress(3, 3, 0))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["so_far"]["DS"]["mean"] == pytest.approx(140.0 / 3)
    report.close()


def test_each_seed_gets_official_files_and_summary_has_over_seed_figures(tmp_path):
    # 3 routes x 2 seeds. Seed 0: DS 100, 50, 0 (mean 50); seed 1: 90, 60, 30 (mean 60).
    xml = F.route_xml(tmp_path, ["1", "2", "3"])
    jobs = {("1", 0): (100.0, True), ("2", 0): (50.0, False), ("3", 0): (0.0, False)}
    jobs |= {("1", 1): (90.0, True), ("2", 1): (60.0, False), ("3", 1): (30.0, False)}
    out = F.build(tmp_path, "eval", jobs, xml)
    ids = [f"{r}_seed{s}" for r, s in jobs]
    seeds = live.write_seed_merges(out, ids, routes_xml=str(xml))
    assert sorted(seeds) == [0, 1]
    for seed, ds in ((0, [100.0, 50.0, 0.0]), (1, [90.0, 60.0, 30.0])):
        merged = json.loads((out / "seeds" / f"seed{seed}" / "merged.json").read_text())
        results = json.loads((out / "seeds" / f"seed{seed}" / "results.json").read_text())
        # Bench2Drive's merge format: records without index, "driving score" = sum / 220 literally
        assert [r["scores"]["score_composed"] for r in merged["_checkpoint"]["records"]] == ds
        assert merged["driving score"] == pytest.approx(sum(ds) / 220)
        assert results["_checkpoint"]["progress"] == [3, 3]
        assert [r["route_id"] for r in results["_checkpoint"]["records"]] == [f"RouteScenario_{r}_rep0" for r in "123"]
    summary = json.loads(
        live.write_summary_json(
            out, json.loads((out / "merged.json").read_text())["summary"], {"state": "finished"}
        ).read_text()
    )
    o = summary["over_seeds"]
    assert o["per_seed"]["0"]["DS"] == pytest.approx(50.0) and o["per_seed"]["1"]["DS"] == pytest.approx(60.0)
    # mean 55, sample std of (50, 60) = 7.07
    assert o["DS"]["mean"] == pytest.approx(55.0) and o["DS"]["std_seeds"] == pytest.approx(50**0.5)
    assert o["method"]["resampling_unit"].startswith("route")
