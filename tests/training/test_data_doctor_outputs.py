"""`automot data doctor` writes only where it is told to and never into the dataset it reads (issue 20, cases 2,
11 and 16)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from automot.cli import main
from automot.training.collect import CollectOptions, collect


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "ds"
    collect(CollectOptions(routes=["merge"], out=str(out), image_size=(64, 32), max_ticks=80, progress=False))
    return out


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("automot data"), err
    return lines[0]


def test_report_onto_the_datasets_own_meta_json_is_refused(dataset, tmp_path, capsys):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    before = _tree(ds)
    for target in (ds / "meta.json", ds / "report.json", ds):
        assert main(["data", "doctor", str(ds), "--report", str(target)]) == 2
        assert "--report" in _one_error_line(capsys.readouterr().err)
    assert _tree(ds) == before
    assert main(["data", "doctor", str(ds)]) == 0  # still a dataset


def test_json_writes_no_file_unless_asked(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "doctor", str(dataset), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] > 0
    assert main(["data", "doctor", str(dataset)]) == 0
    assert os.listdir(tmp_path) == []  # nothing in the current folder
    assert main(["data", "doctor", str(dataset), "--report", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["frames"] > 0


def test_unwritable_report_is_exit_2_before_the_dataset_is_read(dataset, tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    assert main(["data", "doctor", str(tmp_path / "no_dataset"), "--report", str(tmp_path / "adir")]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in _one_error_line(err) or "not found" in err
    assert main(["data", "doctor", str(dataset), "--report", str(tmp_path / "adir")]) == 2
    assert "is a folder" in _one_error_line(capsys.readouterr().err)
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["data", "doctor", str(dataset), "--report", str(ro / "r.json")]) == 2
        assert "cannot write there" in _one_error_line(capsys.readouterr().err)
    finally:
        ro.chmod(0o755)
