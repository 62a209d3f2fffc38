"""``automot data doctor`` on the released model's BEV-encoder inputs (route_features.pt, bev_encoder_lidar_bev).

Fixture: tests/doubles/pdm_lite_bev.py -- 3 routes x 24 annotated frames; features precomputed for frames
8, 10, 12 of each route; every frame has rgb/*.jpg and bev_encoder_lidar_bev/*.npy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from doubles import pdm_lite_bev as fx

from automot.cli import main
from automot.errors import ExitCode
from automot.model.released.synthetic import build_tiny_released
from automot.training.data.doctor import run_doctor

N_FRAMES = len(fx.ROUTES) * fx.FRAMES


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("doctor_bev") / "data"
    fx.write_dataset(root, build_tiny_released(1)[1])
    return root


def test_clean_dataset_counts_frames_per_bev_path(clean, capsys):
    report = run_doctor(clean)
    assert report.error_count == 0, report.errors
    precomputed = len(fx.ROUTES) * len(fx.CURRENT)
    assert report.bev["frames"] == {"precomputed": precomputed, "online": N_FRAMES - precomputed, "skipped": 0}
    assert report.bev["feature_shape"] == [368, 2, 2] and report.bev["routes_with_features"] == len(fx.ROUTES)
    assert main(["data", "doctor", str(clean), "--report", str(clean.parent / "r.json")]) == 0
    assert f"{precomputed} precomputed" in capsys.readouterr().out


def test_broken_bev_inputs_are_named_and_unserved_frames_counted(clean, tmp_path, capsys):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(clean, root)
    a, b, c = (root / r for r in fx.ROUTES)
    # route a: features deleted and two LiDAR arrays missing -> those 2 frames are served by neither path
    (a / "bev_encoder_feature" / "route_features.pt").unlink()
    for f in (3, 4):
        (a / "bev_encoder_lidar_bev" / f"{f:04d}.npy").unlink()
    # route b: frame_nums names a frame the route does not have; one LiDAR array is int and one has 3 channels
    feats = torch.load(b / "bev_encoder_feature" / "route_features.pt")
    feats["frame_nums"][0] = "0099"
    torch.save(feats, b / "bev_encoder_feature" / "route_features.pt")
    np.save(b / "bev_encoder_lidar_bev" / "0005.npy", np.ones((1, 64, 64), np.int64))
    np.save(b / "bev_encoder_lidar_bev" / "0006.npy", np.ones((3, 64, 64), np.float32))
    # route c: bev_features has one frame fewer than frame_nums
    feats = torch.load(c / "bev_encoder_feature" / "route_features.pt")
    feats["bev_features"] = feats["bev_features"][:-1]
    torch.save(feats, c / "bev_encoder_feature" / "route_features.pt")

    report = run_doctor(root)
    found = {(Path(e["file"]).parent.parent.name + "/" + Path(e["file"]).name, e["field"]) for e in report.errors}
    assert found == {
        (f"{b.name}/route_features.pt", "frame_nums"),
        (f"{b.name}/0005.npy", None),
        (f"{b.name}/0006.npy", None),
        (f"{c.name}/route_features.pt", None),
    }, report.errors
    messages = " | ".join(e["message"] for e in report.errors)
    assert (
        "0099" in messages and "float" in messages and "C in {1, 2}" in messages and "frames but frame_nums" in messages
    )
    # precomputed: route b's 2 valid ids (0099 is not a frame); route c's file is unreadable -> online
    # skipped: route a frames 3, 4 (no features, no LiDAR) and route b frames 5, 6 (bad arrays, not in the file)
    assert report.bev["frames"] == {"precomputed": 2, "online": N_FRAMES - 6, "skipped": 4}
    assert sum("neither" in w["message"] for w in report.warnings) == 2
    code = main(["data", "doctor", str(root), "--json", "--report", str(tmp_path / "r.json")])
    out = capsys.readouterr()
    assert code == ExitCode.CHECK_FAILED
    assert json.loads(out.out)["bev"]["frames"]["skipped"] == 4
    assert out.err.startswith("automot data") and ": error: " in out.err and len(out.err.splitlines()) == 1
