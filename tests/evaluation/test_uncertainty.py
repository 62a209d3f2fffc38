"""Uncertainty in every evaluation summary (issue 21.2): DS, SR, RC and each ability with the mean, the sample std
over seeds and a 95 % bootstrap interval over routes (with all their seeds), method and resamples written next to
the numbers, reproducible bit for bit. Expected values are worked out by hand in each test."""

from __future__ import annotations

import json

import pytest
from doubles import eval_compare_fixture as F

from automot.evaluation import stats
from automot.evaluation.merge import merge_eval
from automot.evaluation.report import headline, uncertainty_rows, write_report


def _two_routes(tmp_path):
    # route 101 (ParkedObstacle): DS 60, 70, 80 over seeds 0-2, all successes; route 102 (HardBreakRoute):
    # DS 20, 30, 40, failures. DS mean = 300 / 6 = 50. Per-seed DS: (60+20)/2 = 40, 50, 60 -> sample std 10.
    # Bootstrap over 2 routes: the resampled mean is 70 (p 1/4), 50 (1/2) or 30 (1/4); both 2.5 % and 97.5 %
    # quantiles fall inside the 1/4 atoms: CI = [30, 70]. SR: 100 % / 0 % per route -> mean 50, CI [0, 100],
    # std over seeds 0 (every seed has one success of two).
    xml = F.route_xml(tmp_path, ["101", "102"])
    jobs = {("101", s): (60.0 + 10 * s, True) for s in range(3)}
    jobs |= {("102", s): (20.0 + 10 * s, False) for s in range(3)}
    return F.build(tmp_path, "eval", jobs, xml), xml, jobs


def test_summary_carries_mean_std_over_seeds_and_route_bootstrap_interval(tmp_path):
    out, xml, jobs = _two_routes(tmp_path)
    u = json.loads((out / "merged.json").read_text())["summary"]["uncertainty"]
    assert u["DS"]["mean"] == pytest.approx(50.0)
    assert u["DS"]["std_seeds"] == pytest.approx(10.0)
    assert u["DS"]["ci95"] == pytest.approx([30.0, 70.0])
    assert u["DS"]["seeds"] == 3 and u["DS"]["routes"] == 2
    assert u["SR"]["mean"] == pytest.approx(50.0) and u["SR"]["ci95"] == pytest.approx([0.0, 100.0])
    assert u["SR"]["std_seeds"] == pytest.approx(0.0)
    # RC: route 101 RC 100 (successes), route 102 RC = its DS: mean (300 + 90) / 6 = 65; per seed (100+20)/2 = 60,
    # 65, 70 -> std 5; CI = [30, 100] (the two route means)
    assert u["RC"]["mean"] == pytest.approx(65.0) and u["RC"]["std_seeds"] == pytest.approx(5.0)
    assert u["RC"]["ci95"] == pytest.approx([30.0, 100.0])
    # abilities: 101 is Overtaking (3 successes of 3), 102 Emergency_Brake (0 of 3); one route each -> its own mean
    assert u["abilities"]["Overtaking"]["mean"] == pytest.approx(100.0)
    assert u["abilities"]["Emergency_Brake"]["ci95"] == pytest.approx([0.0, 0.0])
    assert u["method"]["resamples"] == stats.RESAMPLES and u["method"]["rng_seed"] == stats.RNG_SEED
    # the same folder merged again gives the same numbers bit for bit (fixed RNG)
    again = merge_eval(out, [f"{r}_seed{s}" for r, s in jobs], routes_xml=xml)["uncertainty"]
    assert again == u


def test_report_shows_the_intervals_and_the_method(tmp_path):
    out, _, _ = _two_routes(tmp_path)
    written = write_report(out)
    rows = {r[0]: r[1:] for r in uncertainty_rows(written["summary"])}
    assert rows["Driving score"] == ("50.00", "10.00", "[30.00, 70.00]")
    md = written["markdown"].read_text()
    assert "| Driving score | 50.00 | 10.00 | [30.00, 70.00] |" in md
    assert f"{stats.RESAMPLES} resamples" in md and "route (with all its seeds)" in md
    page = written["html"].read_text()
    assert 'id="uncertainty"' in page and "[30.00, 70.00]" in page
    assert headline(written["summary"]).startswith("DS 50.00 [30.00, 70.00]  SR 50.00% [0.00, 100.00]")


def test_single_seed_has_no_std_and_exact_sign_flip_small_case():
    # one seed: no spread over seeds to report
    d = stats.describe([("a", 0, 1.0), ("b", 0, 3.0)])
    assert d["std_seeds"] is None and d["mean"] == 2.0
    # sign flips of route sums (1, 2, 3, 4): |sum| >= 10 only for all + and all -: p = 2 / 16
    assert stats.sign_flip_p([[1.0], [2.0], [3.0], [4.0]]) == pytest.approx(0.125)
