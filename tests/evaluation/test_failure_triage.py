"""Failure triage in the report (issue 21.4): failed or penalised jobs grouped by scenario type, first infraction
and ability with the DS each group costs, and per job the first infraction's simulated time, a still frame and a
+-3 s clip cut from the route's video (the frame of the infraction's tick: one frame per tick)."""

from __future__ import annotations

import json

import pytest
from doubles import eval_compare_fixture as F

from automot.evaluation.merge import merge_eval
from automot.evaluation.report import write_report

FPS = 20  # video frames per second; ticks every 0.05 s of simulated time, one frame per tick


def _route_with_video(folder, collision_tick):
    import cv2
    import numpy as np

    ticks = [{"frame": k, "sim_time": round(0.05 * k, 3), "ego": {"x": 1.0 * k, "y": 0.0}} for k in range(300)]
    (folder / "ticks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
    writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    for k in range(300):  # the frame's brightness encodes its index: the still must show frame `collision_tick`
        writer.write(np.full((48, 64, 3), 255 if k == collision_tick else 0, np.uint8))
    writer.release()
    # the collision happens where the ego is at tick 120 (x = 120), i.e. 6.0 s of simulated time
    data = json.loads((folder / "results.json").read_text())
    rec = data["_checkpoint"]["records"][0]
    rec["infractions"]["vehicle_blocked"] = []  # the fixture's blocked message: this job failed by collision
    rec["infractions"]["collisions_vehicle"] = ["Agent collided against object with id=1 at (x=120.0, y=0.0, z=0.0)"]
    (folder / "results.json").write_text(json.dumps(data))


def test_triage_groups_and_cuts_the_first_infraction(tmp_path):
    # 4 jobs (ParkedObstacle, HardBreakRoute, SignalizedJunctionLeftTurn, PedestrianCrossing routes): DS 100
    # (success), 40 (blocked), 70 (collision at 6.0 s), 100 -> DS lost per group = (100 - DS) / 4:
    # HardBreakRoute 15.0, SignalizedJunctionLeftTurn 7.5; sum 22.5 = 100 - mean DS (77.5).
    rids = ["1", "2", "3", "4"]
    xml = F.route_xml(tmp_path, rids)
    jobs = {("1", 0): (100.0, True), ("2", 0): (40.0, False), ("3", 0): (70.0, False), ("4", 0): (100.0, True)}
    out = F.build(tmp_path, "eval", jobs, xml)
    _route_with_video(out / "routes" / "3_seed0", collision_tick=120)
    merge_eval(out, [f"{r}_seed0" for r in rids], routes_xml=xml)
    tri = write_report(out)["triage"]
    by_scenario = {g["group"]: (g["jobs"], g["ds_lost"]) for g in tri["by_scenario"]}
    assert by_scenario == {"HardBreakRoute": (1, 15.0), "SignalizedJunctionLeftTurn": (1, 7.5)}
    assert sum(g["ds_lost"] for g in tri["by_first_infraction"]) == pytest.approx(22.5)
    job3 = next(j for j in tri["jobs"] if j["job"] == "3_seed0")
    assert job3["first_infraction"] == "collisions_vehicle" and job3["time"] == pytest.approx(6.0)
    assert job3["video_time"] == pytest.approx(120 / FPS)
    import cv2

    still = cv2.imread(str(out / job3["still"]))
    assert still is not None and still.mean() > 200  # the bright frame: exactly the infraction's tick
    clip = cv2.VideoCapture(str(out / job3["clip"]))
    n = int(clip.get(cv2.CAP_PROP_FRAME_COUNT))
    clip.release()
    assert 6 * FPS - 2 <= n <= 6 * FPS + 2  # +-3 s of simulated time = 120 frames
    md = (out / "report.md").read_text()
    assert "## Failure triage" in md and "| HardBreakRoute | 1 | 15.00 |" in md
    page = (out / "report.html").read_text()
    assert 'class="still"' in page and f'href="{job3["clip"]}"' in page


def test_compare_cuts_b_first_infraction_on_regressed_jobs(tmp_path):
    """`eval compare` triage (issue 21.4 "and compare"): on each job B lost DS on, B's first infraction gets a
    still (the frame of its tick) and a +-3 s clip cut from B's video, shown in compare.md / compare.html."""
    from automot.evaluation.compare import compare_folders, write_compare

    rids = ["1", "2", "3", "4"]
    xml = F.route_xml(tmp_path, rids)
    same = {("1", 0): (100.0, True), ("2", 0): (40.0, False), ("4", 0): (100.0, True)}
    a = F.build(tmp_path, "a", {**same, ("3", 0): (100.0, True)}, xml)
    b = F.build(tmp_path, "b", {**same, ("3", 0): (70.0, False)}, xml)  # regressed: collision at 6.0 s in B
    _route_with_video(b / "routes" / "3_seed0", collision_tick=120)
    for folder in (a, b):
        merge_eval(folder, [f"{r}_seed0" for r in rids], routes_xml=xml)
    out = tmp_path / "cmp"
    written = write_compare(compare_folders(a, b, out=out), out)
    row = next(r for r in json.loads(written["json"].read_text())["per_route"] if r["job"] == "3_seed0")
    assert row["delta_ds"] == pytest.approx(-30.0) and row["first_infraction_time_b"] == pytest.approx(6.0)
    import cv2

    still = cv2.imread(str(out / row["still_b"]))
    assert still is not None and still.mean() > 200  # the bright frame is tick 120 = 6.0 s
    clip = cv2.VideoCapture(str(out / row["clip_b"]))
    n = int(clip.get(cv2.CAP_PROP_FRAME_COUNT))
    clip.release()
    assert 6 * FPS - 2 <= n <= 6 * FPS + 2
    unchanged = [r for r in json.loads(written["json"].read_text())["per_route"] if r["job"] != "3_seed0"]
    assert all(r.get("still_b") is None and r.get("clip_b") is None for r in unchanged)
    assert f"[clip]({row['clip_b']})" in written["markdown"].read_text()
    page = written["html"].read_text()
    assert 'id="regression-media"' in page and 'class="still"' in page and f'href="{row["clip_b"]}"' in page
