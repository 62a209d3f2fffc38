"""`automot drive` (embedded): nothing lost, nothing hangs, one clear line for every mistake (issue #12).

Real `automot drive --world embedded --route highway_lane_keep` subprocesses with the default demo agent and a
small --ticks: bad inputs (one line, exit 2, nothing changed on disk), a finished --out (refused; --overwrite
replaces it), SIGINT / SIGTERM at a random tick (exit 130, valid results.json / ticks.jsonl / video.mp4), an
interrupted --overwrite (the earlier run stays), SIGKILL (valid streams; the stale lock is taken over) and two
processes on one --out (the second is refused naming the first). Plus the folder lock and staged commit helpers.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from automot.errors import UsageError
from automot.fsio import LOCK_NAME, FolderLock, StagedFiles, lock_out

ROUTE = "highway_lane_keep"
FINISHED_TICKS = 30
LONG_TICKS = 2000  # never reached: the interrupt tests stop the drive long before
rng = random.Random(12)  # the tick each interrupt test signals at (seeded: failures reproduce)


def _cmd(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "automot.cli",
        "drive",
        "--world",
        "embedded",
        "--route",
        ROUTE,
        "--no-progress",
        *args,
    ]


def _run(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _start(cwd: Path, *args: str, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        _cmd(*args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def _hashes(root: Path) -> dict[str, str]:
    """Every file (hidden ones included) under ``root`` -> sha256; folders -> 'dir'."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"drive ended (rc {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _video_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    frames = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        frames += 1
    cap.release()
    return frames


def _check_streams(out: Path) -> int:
    """ticks.jsonl: every line JSON, frames 0..n-1; video.mp4 opens with one frame per line. Returns n."""
    lines = _lines(out / "ticks.jsonl")
    frames = [json.loads(line)["frame"] for line in lines]
    assert frames == list(range(len(frames))), frames
    assert len(frames) > 0
    assert _video_frames(out / "video.mp4") == len(frames)
    return len(frames)


def _single_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("automot drive: error: "), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


def _no_leftovers(out: Path) -> None:
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert hidden == [], f"left in {out}: {hidden}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One finished drive (the default demo agent), copied by the tests that need a finished --out."""
    root = tmp_path_factory.mktemp("finished")
    res = _run(root, "--out", "run", "--ticks", str(FINISHED_TICKS))
    assert res.returncode == 0, res.stderr
    return root / "run"


# ---------------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "case",
    ["out_is_file", "out_under_file", "seed_negative", "ticks_zero", "ticks_negative", "finished_out", "resume"],
)
def test_bad_input_one_line_exit_2_nothing_changed(tmp_path, finished_run, case):
    (tmp_path / "a_file").write_text("keep me\n")
    shutil.copytree(finished_run, tmp_path / "done")
    args = {
        "out_is_file": ["--out", "a_file"],
        "out_under_file": ["--out", "a_file/sub"],  # unwritable even as root
        "seed_negative": ["--out", "new", "--seed", "-1"],
        "ticks_zero": ["--out", "new", "--ticks", "0"],
        "ticks_negative": ["--out", "new", "--ticks", "-5"],
        "finished_out": ["--out", "done", "--ticks", "10"],
        "resume": ["--out", "new", "--resume"],
    }[case]
    before = _hashes(tmp_path)
    res = _run(tmp_path, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    line = _single_error_line(res.stderr)
    expected = {
        "out_is_file": "is a file",
        "out_under_file": "cannot write there",
        "seed_negative": "--seed -1",
        "ticks_zero": "--ticks 0",
        "ticks_negative": "--ticks -5",
        "finished_out": "exists and is not empty",
        "resume": "--resume",
    }[case]
    assert expected in line
    assert _hashes(tmp_path) == before


def test_unwritable_out_parent(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a 0o500 folder; out_under_file covers an unwritable --out")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        before = _hashes(tmp_path)
        res = _run(tmp_path, "--out", "ro/sub", "--ticks", "5")
        assert res.returncode == 2
        assert "cannot write there" in _single_error_line(res.stderr)
        assert _hashes(tmp_path) == before
    finally:
        parent.chmod(0o700)


# ---------------------------------------------------------------------------------------------- --overwrite


def test_overwrite_replaces_the_whole_run(tmp_path, finished_run):
    out = tmp_path / "done"
    shutil.copytree(finished_run, out)
    # the expert writes no video / tick log / agent config: the earlier run's must go, not stay mixed in
    res = _run(tmp_path, "--out", "done", "--ticks", "12", "--agent", "expert", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    results = json.loads((out / "results.json").read_text())
    assert results["_checkpoint"]["records"][0]["status"] == "Stopped - tick limit"

    res = _run(tmp_path, "--out", "done", "--ticks", "15", "--overwrite")  # and back to the model agent
    assert res.returncode == 0, res.stderr
    assert _check_streams(out) == 15
    assert json.loads((out / "summary.jsonl").read_text())["ticks"] == 15
    _no_leftovers(out)


def test_overwrite_interrupted_keeps_the_earlier_run(tmp_path, finished_run):
    out = tmp_path / "done"
    shutil.copytree(finished_run, out)
    before = _hashes(tmp_path)
    proc = _start(tmp_path, "--out", "done", "--ticks", str(LONG_TICKS), "--overwrite")
    n = rng.randint(3, 25)

    def staged_ticks() -> int:
        return max((len(_lines(p)) for p in out.glob(".staged.*.tmp/ticks.jsonl")), default=0)

    _wait_for(lambda: staged_ticks() >= n, proc, what=f"{n} staged ticks")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("automot drive: interrupted by SIGTERM after ") and "keeps the earlier run" in last
    assert _hashes(tmp_path) == before  # the earlier run untouched, staging and lock gone


# ---------------------------------------------------------------------------------------------- interrupts


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupt_writes_a_valid_partial_run(tmp_path, sig):
    out = tmp_path / "run"
    # SIGINT goes to the whole process group, as Ctrl-C in a terminal does (ffmpeg must survive it)
    proc = _start(tmp_path, "--out", "run", "--ticks", str(LONG_TICKS), new_session=sig == "SIGINT")
    n = rng.randint(45, 80)  # the demo car needs ~35 ticks to make measurable progress (RC > 0)
    _wait_for(lambda: len(_lines(out / "ticks.jsonl")) >= n, proc, what=f"{n} ticks")
    if sig == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"automot drive: interrupted by {sig} after ")

    ticks = _check_streams(out)
    assert ticks >= n
    results = json.loads((out / "results.json").read_text())
    record = results["_checkpoint"]["records"][0]
    assert record["status"] == "Failed - interrupted"
    assert results["entry_status"] == "Started" and results["eligible"] is False
    assert 0.0 < results["score_route"] < 100.0
    assert results["score_route"] == record["scores"]["score_route"]
    assert record["meta"]["duration_game"] == pytest.approx(ticks * 0.05, abs=1e-3)
    assert json.loads((out / "summary.jsonl").read_text())["ticks"] == ticks
    assert f"after {ticks} ticks" in err
    _no_leftovers(out)


def test_sigkill_leaves_valid_streams_and_a_lock_the_next_run_takes_over(tmp_path):
    out = tmp_path / "run"
    proc = _start(tmp_path, "--out", "run", "--ticks", str(LONG_TICKS))
    n = rng.randint(5, 20)
    _wait_for(lambda: len(_lines(out / "ticks.jsonl")) >= n, proc, what=f"{n} ticks")
    proc.kill()
    proc.communicate(timeout=30)
    time.sleep(1.0)  # ffmpeg (its own process group) finalises the video when its pipe closes
    assert (out / LOCK_NAME).exists() and not (out / "results.json").exists()
    lines = _lines(out / "ticks.jsonl")
    assert [json.loads(line)["frame"] for line in lines] == list(range(len(lines)))
    assert 0 < _video_frames(out / "video.mp4") <= len(lines)

    # the dead process's lock is stale (the fast expert: no model to load); its files are replaced
    res = _run(tmp_path, "--out", "run", "--ticks", "10", "--overwrite", "--agent", "expert")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


# ---------------------------------------------------------------------------------------------- the lock


def test_second_process_on_the_same_out_is_refused(tmp_path):
    out = tmp_path / "run"
    first = _start(tmp_path, "--out", "run", "--ticks", "60")

    def locked() -> bool:
        try:
            return json.loads((out / LOCK_NAME).read_text()).get("pid") == first.pid
        except (OSError, ValueError):
            return False

    _wait_for(locked, first, what="the first drive's lock")
    # --overwrite too: the lock is checked before anything else about the folder
    second = _run(tmp_path, "--out", "run", "--ticks", "10", "--overwrite")
    assert first.poll() is None, "the first drive ended before the second one was refused: raise its --ticks"
    assert second.returncode == 2
    line = _single_error_line(second.stderr)
    assert "in use by another automot process" in line and f"pid {first.pid}" in line

    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert _check_streams(out) == 60
    assert json.loads((out / "results.json").read_text())["_checkpoint"]["records"][0]["status"] == (
        "Stopped - tick limit"
    )
    _no_leftovers(out)


def test_folder_lock_helpers(tmp_path):
    with lock_out(tmp_path) as lock:
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(UsageError, match=f"in use by another automot process \\(pid {os.getpid()}"):
            FolderLock(tmp_path).acquire()  # another open file description: flock refuses it
        assert lock.took_over is None
    assert not (tmp_path / LOCK_NAME).exists()

    # a lock file left by a killed process (no flock held) is taken over
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 999999999, "host": "gone"}))
    with lock_out(tmp_path) as lock:
        assert lock.took_over == {"pid": 999999999, "host": "gone"}
    assert not (tmp_path / LOCK_NAME).exists()


def test_staged_commit_last_and_replace(tmp_path):
    for name in ("results.json", "video.mp4", "other.txt"):
        (tmp_path / name).write_text(f"old {name}")
    stage = StagedFiles(tmp_path)
    stage.write_text("results.json", "new")
    stage.write_text("ticks.jsonl", "new")
    done = stage.commit(last=("results.json",), replace=("results.json", "video.mp4", "ticks.jsonl"))
    assert [p.name for p in done] == ["ticks.jsonl", "results.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt", "results.json", "ticks.jsonl"]
    assert (tmp_path / "results.json").read_text() == "new"
