"""The evaluation report in a real browser: Debian's headless Chromium driven by Playwright (its Python package
only, pointed at /usr/bin/chromium; .ci/run installs both). The page must load without console errors, show the
summary table with the hand-computed numbers, display every image (naturalWidth > 0), and every video link must
resolve to a file of the evaluation folder. The screenshot is kept in tmp; AUTOMOT_UPDATE_SCREENSHOT=1 also writes
it to docs/eval_report.png (the README's picture)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from automot.evaluation.merge import merge_eval, route_ids_from_xml
from automot.evaluation.report import summary_rows, write_report

REPO = Path(__file__).resolve().parents[2]
# the `browser` fixture: tests/evaluation/conftest.py


@pytest.fixture
def report_fixture():
    """tests/doubles/eval_report_fixture.py: ``build_eval_dir(root)`` and the hand-computed ``EXPECTED`` values."""
    from doubles import eval_report_fixture

    return eval_report_fixture


def test_report_in_chromium(browser, report_fixture, tmp_path):
    out, xml = report_fixture.build_eval_dir(tmp_path)
    summary = merge_eval(out, route_ids_from_xml(xml), routes_xml=xml)
    written = write_report(out)
    html_path = written["html"]

    page = browser.new_page(viewport={"width": 1150, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    response = page.goto(html_path.as_uri(), wait_until="load")
    assert response is None or response.ok
    page.wait_for_load_state("networkidle")

    # the summary table as the browser renders it
    shown = dict(
        page.eval_on_selector_all(
            "#summary tr[data-metric]",
            "rows => rows.map(r => [r.cells[0].innerText.trim(), r.cells[1].innerText.trim()])",
        )
    )
    for label, value in report_fixture.EXPECTED.items():
        assert shown[label] == value, (label, shown.get(label))
    assert shown == dict(summary_rows(summary))
    assert shown["Routes scored / expected"] == "7 / 8" and shown["Missing (scored 0)"] == "1"
    assert page.title() == "Evaluation report"

    # every image decoded by the browser
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.id, i.complete, i.naturalWidth])")
    assert {i[0] for i in images if i[0].startswith("plot-")} == {"plot-abilities", "plot-ds_hist", "plot-infractions"}
    assert all(complete and width > 0 for _, complete, width in images), images
    # failure triage: a still of the first infraction for the penalised routes with a video (103, 104, 105;
    # the fixture's 1 s videos end before the infraction's tick, so the still is their last frame), and a clip
    assert {i[0] for i in images if i[0].startswith("still-")} == {"still-103", "still-104", "still-105"}
    clips = page.eval_on_selector_all("a.clip", "as => as.map(a => a.href)")
    assert len(clips) == 3
    for href in clips:
        target = Path(unquote(urlparse(href).path))
        assert target.is_file() and target.stat().st_size > 0 and out.resolve() in target.resolve().parents, href

    # every video link resolves (relative to the page) to an existing file inside the evaluation folder
    links = page.eval_on_selector_all("a.video", "as => as.map(a => a.href)")
    assert len(links) == 6  # routes 101-105 and 107 drove; 106 crashed (no video), 108 has no record
    for href in links:
        target = Path(unquote(urlparse(href).path))
        assert target.is_file() and out.resolve() in target.resolve().parents, href
        assert target.stat().st_size > 0

    # the per-route table: missing and crashed routes are there, with DS 0
    rows = page.eval_on_selector_all("#routes tr", "rows => rows.slice(1).map(r => [...r.cells].map(c => c.innerText))")
    by_route = {r[0]: r for r in rows}
    assert (
        by_route["RouteScenario_108_rep0"][1].startswith("Missing") and by_route["RouteScenario_108_rep0"][2] == "0.00"
    )
    assert "simulator exited" in by_route["RouteScenario_106_rep0"][1]
    assert (
        by_route["RouteScenario_103_rep0"][4] == "collisions_vehicle"
        and by_route["RouteScenario_103_rep0"][5] == "8.0 s"
    )
    assert not errors, errors

    shot = tmp_path / "eval_report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("AUTOMOT_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "eval_report.png")
    page.close()
