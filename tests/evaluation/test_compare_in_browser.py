"""The comparison page (compare.html) in Debian's headless Chromium driven by Playwright, like the report's test:
no console errors, the Δ table shows the hand-computed numbers, the plot decodes, the biggest regression is the
first row, and every video link resolves to a video of folder A or B."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from doubles import eval_compare_fixture as F

from automot.evaluation.compare import compare_folders, write_compare
from automot.evaluation.compare_page import delta_rows

# the `browser` fixture: tests/evaluation/conftest.py


def test_compare_page_in_chromium(browser, tmp_path):
    # 4 routes x 2 seeds. A: DS 80 everywhere. B: route 102 drops to 20 on both seeds (success -> failure),
    # route 104 gains 10. ΔDS per job: 0,0, -60,-60, 0,0, +10,+10 -> mean (-120 + 20) / 8 = -12.50.
    rids = ["101", "102", "103", "104"]
    xml = F.route_xml(tmp_path, rids)
    ja = {(r, s): (80.0, True) for r in rids for s in (0, 1)}
    jb = dict(ja)
    jb.update({("102", s): (20.0, False) for s in (0, 1)})
    jb.update({("104", s): (90.0, True) for s in (0, 1)})
    a = F.build(tmp_path, "A", ja, xml, videos=True)
    b = F.build(tmp_path, "B", jb, xml, videos=True)
    out = tmp_path / "C"
    result = compare_folders(a, b, out=out)
    page_path = write_compare(result, out)["html"]

    page = browser.new_page(viewport={"width": 1150, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.goto(page_path.as_uri(), wait_until="load")
    page.wait_for_load_state("networkidle")
    assert page.title() == "Evaluation comparison"

    shown = page.eval_on_selector_all(
        "#delta tr[data-metric]", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    assert [tuple(r) for r in shown] == delta_rows(result)
    ds_row = shown[0]
    assert ds_row[:4] == ["DS", "80.00", "67.50", "-12.50"]
    assert page.inner_text("#verdict") == result["verdict"]

    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.id, i.complete, i.naturalWidth])")
    assert images and all(complete and width > 0 for _, complete, width in images), images

    jobs = page.eval_on_selector_all("#jobs tr", "rows => rows.slice(1).map(r => r.cells[0].innerText)")
    assert jobs[:2] == ["102 seed 0", "102 seed 1"] and jobs[-2:] == ["104 seed 0", "104 seed 1"]

    for side, folder in (("a", a), ("b", b)):
        links = page.eval_on_selector_all(f"a.video-{side}", "as => as.map(a => a.href)")
        assert len(links) == 8
        for href in links:
            target = Path(unquote(urlparse(href).path))
            assert target.is_file() and folder.resolve() in target.resolve().parents, href
    assert "102_seed0" in page.inner_text("#to-failure")
    assert not errors, errors
    page.close()
