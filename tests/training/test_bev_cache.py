"""``automot data bev-cache``: route_features.pt equal to the online path, atomic per route, resumable.

Fixture: tests/doubles/pdm_lite_bev.py without precomputed features (3 routes x 24 frames with rgb + LiDAR BEV).
Expected values: the trainer's online path (training/released.py SceneFiller, the agent's encoder runner).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from doubles import pdm_lite_bev as fx
from doubles.paths import REPO

from automot.cli import main
from automot.errors import ExitCode
from automot.model.released.loader import load_converted
from automot.training.data.bev_features import load_route_features, online_inputs, route_ref
from automot.training.released import SceneFiller, load_bev_encoder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bev_cache")
    ckpt, bev = fx.converted_checkpoint(tmp)
    fx.write_dataset(tmp / "data", bev, features=False)
    return tmp / "data", ckpt


def _files(root):
    return {r: root / r / "bev_encoder_feature" / "route_features.pt" for r in fx.ROUTES}


def test_cached_features_equal_the_online_path(prepared, tmp_path, capsys):
    src, ckpt = prepared
    root = tmp_path / "data"
    shutil.copytree(src, root)
    argv = ["data", "bev-cache", str(root), "--checkpoint", str(ckpt), "--batch-size", "5", "--no-progress", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 3 and summary["frames"] == 3 * fx.FRAMES and summary["frames_failed"] == 0
    encoder = load_bev_encoder(ckpt)
    model = load_converted(ckpt)
    filler = SceneFiller(encoder, model, torch.device("cpu"))
    for route, path in _files(root).items():
        feats = load_route_features(path, (368, 2, 2))
        assert feats.frame_nums == [f"{i:04d}" for i in range(fx.FRAMES)]
        for frame in (0, 7, 23):  # first batch, a middle one, the last (short) batch
            inputs = online_inputs(route_ref(root / route, frame), encoder.cfg)
            want = filler.tokens(torch.from_numpy(inputs["rgb"]), torch.from_numpy(inputs["lidar"]))
            torch.testing.assert_close(feats.tokens(f"{frame:04d}"), want, rtol=0, atol=1e-5)
    # frames differ from each other: the comparison above could fail
    assert (feats.tokens("0000") - feats.tokens("0023")).abs().max() > 1e-3
    # a re-run leaves the existing files alone
    stamps = {p: p.stat().st_mtime_ns for p in _files(root).values()}
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["skipped_existing"] == 3
    assert {p: p.stat().st_mtime_ns for p in _files(root).values()} == stamps


def test_checkpoint_without_bev_encoder_is_refused(prepared, tmp_path, capsys):
    from automot.model import build_model, save_pretrained

    plain = save_pretrained(build_model("tiny"), tmp_path / "plain")
    code = main(["data", "bev-cache", str(prepared[0]), "--checkpoint", str(plain), "--no-progress"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE == 2
    assert len(err.splitlines()) == 1 and "no bev_encoder.* tensors" in err and err.startswith("automot data")
    assert not any(p.is_file() for p in _files(prepared[0]).values())


def test_sigkill_leaves_complete_or_absent_files_and_rerun_completes_the_rest(prepared, tmp_path):
    src, ckpt = prepared
    root = tmp_path / "data"
    shutil.copytree(src, root)
    files = _files(root)
    env = {**os.environ, "PYTHONPATH": str(REPO), "AUTOMOT_TEST_SLOW_COMMIT": "60"}  # pause before each rename
    argv = [sys.executable, "-m", "automot.cli", "data", "bev-cache", str(root), "--checkpoint", str(ckpt)]
    proc = subprocess.Popen([*argv, "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, killed = time.monotonic() + 240, False
        first = files[fx.ROUTES[0]].parent
        while time.monotonic() < deadline and proc.poll() is None:
            # the first route's features are fully written to a temporary file, its rename is pending
            if first.is_dir() and any(p.name.endswith(".tmp") and p.stat().st_size > 0 for p in first.iterdir()):
                time.sleep(0.2)
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed, f"bev-cache finished before it could be killed (rc {proc.returncode})"
    assert proc.returncode == -signal.SIGKILL
    assert not any(p.is_file() for p in files.values())  # killed before any rename: no route file at all
    # second run without the pause, killed after the first route file is in place
    env.pop("AUTOMOT_TEST_SLOW_COMMIT")
    proc = subprocess.Popen([*argv, "--no-progress", "--batch-size", "1"], env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not files[fx.ROUTES[0]].is_file():
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    present = [r for r, p in files.items() if p.is_file()]
    assert fx.ROUTES[0] in present
    for r in present:  # every route file there is complete
        assert len(load_route_features(files[r]).frame_nums) == fx.FRAMES
    stamps = {r: files[r].stat().st_mtime_ns for r in present}
    assert main([*argv[3:], "--no-progress"]) == 0  # re-run: only the missing routes are computed
    assert all(p.is_file() for p in files.values())
    assert {r: files[r].stat().st_mtime_ns for r in present} == stamps
    for p in files.values():
        assert len(load_route_features(p).frame_nums) == fx.FRAMES


def test_sample_lists_pick_the_rows_current_frames(prepared, tmp_path):
    from automot.training.bev_cache import run_cache

    src, ckpt = prepared
    root = tmp_path / "data"
    shutil.copytree(src, root)
    lists = [
        str(root / "pdm_lite_2hz_2tp_train_bev_encoder.jsonl"),
        str(root / "pdm_lite_2hz_2tp_val_bev_encoder.jsonl"),
    ]
    summary = run_cache(root, ckpt, batch_size=2, sample_lists=lists, progress=False)
    assert summary["written"] == len(fx.ROUTES) and summary["frames"] == len(fx.ROUTES) * len(fx.CURRENT)
    for path in _files(root).values():  # the rows' bev_encoder_feature_frame ids, not their history frames
        assert load_route_features(path).frame_nums == [f"{f:04d}" for f in fx.CURRENT]
