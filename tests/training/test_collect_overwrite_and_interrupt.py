"""`automot collect --overwrite` keeps the earlier dataset until the new one is complete (a SIGKILL leaves it
byte-identical, the next run removes what the killed one left), and a SIGINT while appending leaves a summary that
matches the episodes on disk (issue 20, cases 3 and 17)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from automot.training.collect import CollectOptions, collect
from automot.training.data.automot_format import read_dataset
from automot.world.routes import load_route


def _cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "automot.cli", "collect", "--routes", "merge", "--image-size", "64x32",
        "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _episode_samples(folder: Path) -> int:
    path = folder / "samples.jsonl"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def test_killed_overwrite_keeps_the_earlier_dataset_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "ds"
    collect(CollectOptions(routes=["merge"], out=str(out), image_size=(64, 32), max_ticks=80, progress=False))
    before = _tree(out)
    proc = subprocess.Popen(_cmd(out, "--overwrite", "--ticks", "2000", "--seed", "7"), stderr=subprocess.PIPE)
    try:
        # the new run is writing its episode's frames (into a hidden staging folder next to --out)
        _wait_for(lambda: any(tmp_path.glob(".ds.staged.*.tmp/*/frames/*/*")) or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _tree(out) == before  # the earlier dataset, byte-identical, still complete
    assert list(tmp_path.glob(".ds.staged.*.tmp"))  # what the kill left (hidden, clearly temporary)
    done = subprocess.run(_cmd(out, "--overwrite", "--ticks", "80", "--seed", "3"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no staging folder of either run left
    (episode,) = read_dataset(out)  # the new dataset only: none of the earlier episodes stayed
    (row,) = json.loads((out / "collect_summary.json").read_text())["episodes"]
    assert row["seed"] == load_route("merge").seed + 3 and row["kept"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [row["episode"]]


def test_failed_overwrite_keeps_the_earlier_dataset(tmp_path):
    out = tmp_path / "ds"
    collect(CollectOptions(routes=["merge"], out=str(out), image_size=(64, 32), max_ticks=80, progress=False))
    before = _tree(out)
    bad = CollectOptions(routes=["merge"], out=str(out), image_size=(64, 32), max_ticks=80, overwrite=True,
                         progress=False, frame_every=3, sample_every=10)  # fmt: skip
    try:
        collect(bad)
    except Exception:  # noqa: BLE001 - refused (sample_every not a multiple of frame_every)
        pass
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_sigint_while_appending_keeps_the_summary_true(tmp_path):
    out = tmp_path / "ds"
    collect(CollectOptions(routes=["merge"], out=str(out), image_size=(64, 32), max_ticks=80, progress=False))
    proc = subprocess.Popen(
        _cmd(out, "--episodes", "3", "--ticks", "400", "--seed", "10"), stderr=subprocess.PIPE, text=True
    )
    try:
        # the first appended episode is recorded; the second one is being written
        def second_running() -> bool:
            if proc.poll() is not None:
                return True
            rows = json.loads((out / "collect_summary.json").read_text())["episodes"]
            return (
                len(rows) >= 2 and any(out.glob("merge_seed*/frames/*/*")) and len(list(out.glob("merge_seed*"))) >= 3
            )

        _wait_for(second_running, timeout=240)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.startswith("automot collect")]
    assert len(lines) == 1 and "interrupted during episode" in lines[0], err
    assert "/tmp/automot_collect_" not in lines[0]  # never a temporary path that is gone
    summary = json.loads((out / "collect_summary.json").read_text())
    kept = [r for r in summary["episodes"] if r["kept"]]
    on_disk = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert sorted(r["episode"] for r in kept) == on_disk  # no unlisted partial episode
    assert summary["total_samples"] == sum(_episode_samples(out / name) for name in on_disk)
    assert summary["total_samples"] == sum(r["samples"] for r in kept)
