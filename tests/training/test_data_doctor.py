"""`automot data doctor DIR [--json]` and the fast checks `automot train` runs at start-up."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from automot.cli import main
from automot.errors import ExitCode
from automot.training.data.doctor import run_doctor
from automot.training.synthetic import write_synthetic_dataset


def _gz(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(data, f)


def _jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(path)


def _b2d_clip(route: Path, frames: int = 40) -> None:
    """East-bound at 5 m/s, 10 Hz (Bench2Drive anno layout; compass theta = CARLA yaw + pi/2)."""
    for i in range(frames):
        anno = {
            "x": 0.5 * i,
            "y": 0.0,
            "theta": math.pi / 2,
            "speed": 5.0,
            "x_command_near": 50.0,
            "y_command_near": 0.0,
            "x_command_far": 100.0,
            "y_command_far": 0.0,
            "command_near": 4,
            "command_far": 4,
            "bounding_boxes": [],
        }
        _gz(route / "anno" / f"{i:05d}.json.gz", anno)
        _jpg(route / "camera" / "rgb_front" / f"{i:05d}.jpg")


def _broken_b2d(root: Path) -> Path:
    good, bad = root / "v1" / "Accident_Town03_Route101_Weather23", root / "v1" / "HardBreak_Town01_Route30_Weather3"
    _b2d_clip(good)
    _b2d_clip(bad)
    (bad / "anno" / "00003.json.gz").write_bytes(b"not gzip")  # corrupt file
    (bad / "camera" / "rgb_front" / "00005.jpg").unlink()  # missing image
    anno = json.load(gzip.open(bad / "anno" / "00007.json.gz", "rt"))
    anno["x"], anno["speed"] = None, None  # None position: error; None speed: warning (the reader fills it)
    _gz(bad / "anno" / "00007.json.gz", anno)
    anno = json.load(gzip.open(good / "anno" / "00002.json.gz", "rt"))
    anno["y_command_near"] = 100.0  # near target point 100 m to the side
    _gz(good / "anno" / "00002.json.gz", anno)
    return root


def test_doctor_finds_bench2drive_problems(tmp_path):
    root = _broken_b2d(tmp_path / "b2d")
    report = run_doctor(root)
    assert report.format == "bench2drive" and report.routes == 2 and report.frames == 80
    found = {(Path(e["file"]).name, e["field"]) for e in report.errors}
    assert ("00003.json.gz", None) in found  # corrupt
    assert ("00005.jpg", "image") in found  # missing image
    assert ("00007.json.gz", "x") in found  # None position
    assert ("00002.json.gz", "target_points") in found  # 100 m to the side
    assert ("HardBreak_Town01_Route30_Weather3", None) in {(Path(e["file"]).name, e["field"]) for e in report.errors}
    assert ("00007.json.gz", "speed") in {(Path(w["file"]).name, w["field"]) for w in report.warnings}
    assert not report.ok and report.error_count == len(report.errors)
    assert report.decisions["now"]["keep"] == report.samples > 0  # the readable route's samples
    assert report.speed["p50"] == 5.0


def test_doctor_cli_json_and_exit_code(tmp_path, capsys):
    root = _broken_b2d(tmp_path / "b2d")
    out = tmp_path / "report.json"
    code = main(["data", "doctor", str(root), "--json", "--report", str(out)])
    captured = capsys.readouterr()
    assert code == ExitCode.CHECK_FAILED == 4
    printed = json.loads(captured.out)
    assert {"frames", "routes", "errors", "warnings"} <= set(printed)
    assert printed["frames"] == 80 and printed["routes"] == 2
    assert all(set(e) >= {"file", "field", "message"} and e["file"] for e in printed["errors"])
    assert json.loads(out.read_text()) == printed  # the report file holds the same
    assert captured.err.startswith("automot data doctor: error: ") and len(captured.err.splitlines()) == 1
    # a threshold above the error count passes
    code = main(["data", "doctor", str(root), "--report", str(out), "--max-errors", "100"])
    assert code == 0 and "routes" in capsys.readouterr().out


def test_doctor_pdm_timestamps_and_clean_dataset(tmp_path, capsys):
    route = tmp_path / "pdm" / "Town12" / "Route_a_Rep0"
    for i in range(20):
        m = {
            "pos_global": [i * 1.0, 0.0],
            "theta": 0.0,
            "speed": 4.0,
            "target_point": [30.0, 0.0],
            "target_point_next": [60.0, 0.0],
            "timestamp": 0.25 * i if i != 10 else 1.0,  # goes back in time at frame 10
        }
        _gz(route / "measurements" / f"{i:04d}.json.gz", m)
        _jpg(route / "rgb" / f"{i:04d}.jpg")
    report = run_doctor(tmp_path / "pdm")
    assert report.format == "pdm_lite"
    assert [(Path(e["file"]).name, e["field"]) for e in report.errors] == [("0010.json.gz", "timestamp")]
    clean = write_synthetic_dataset(tmp_path / "syn", episodes=2, seed=0)
    code = main(["data", "doctor", str(clean), "--report", str(tmp_path / "r.json")])
    assert code == 0 and "0 errors" in capsys.readouterr().out


def test_doctor_automot_format_names_line_and_field(tmp_path):
    root = write_synthetic_dataset(tmp_path / "syn", episodes=2, seed=0)
    samples = sorted(root.glob("*/samples.jsonl"))[0]
    lines = samples.read_text().splitlines()
    row = json.loads(lines[1])
    row["speed"] = None
    lines[1] = json.dumps(row)
    samples.write_text("\n".join(lines) + "\n")
    report = run_doctor(root)
    assert [(e["file"], e["field"]) for e in report.errors] == [(f"{samples}:2", "speed")]


def test_train_runs_fast_checks_at_startup(tmp_path, capsys):
    root = write_synthetic_dataset(tmp_path / "syn", episodes=2, seed=0)
    first = sorted(root.glob("*/frames/*/*.png"))[0]
    first.unlink()  # a frame a sample needs is missing
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "data": {"train": [str(root)]}}))
    code = main(["train", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE == 2  # a bad input file (README's exit-code table); `data doctor` itself exits 4
    assert first.name in err and "automot data doctor" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
