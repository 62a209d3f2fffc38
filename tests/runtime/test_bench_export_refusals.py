"""`automot bench` / `automot export`: no CUDA is exit 3 and an output that cannot be written is exit 2, both found
before a model is built, and a refused export leaves no --out folder (issue 20, cases 10, 11 and 15)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from automot.cli import build_parser, main

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def _one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"automot {command}: error: "), err
    return lines[0]


def _bench_json_option() -> str:
    """The option that writes bench's JSON result to a file (``--json-out``, formerly ``--json FILE``)."""
    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    return "--json-out" if "--json-out" in bench._option_string_actions else "--json"


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_bench_without_cuda_is_exit_3(capsys, device):
    assert main(["bench", "--preset", "tiny", "--device", device, "--iters", "1", "--agent-ticks", "0"]) == 3
    assert "CUDA" in _one_error_line(capsys.readouterr().err, "bench")


@no_cuda
def test_export_without_cuda_is_exit_3_and_leaves_no_out(tmp_path, capsys):
    out = tmp_path / "new" / "export"
    assert main(["export", "--preset", "tiny", "--device", "cuda", "--out", str(out)]) == 3
    assert "CUDA" in _one_error_line(capsys.readouterr().err, "export")
    assert not (tmp_path / "new").exists()


def test_export_refused_after_out_was_created_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "new" / "export"
    assert main(["export", "--checkpoint", str(tmp_path / "missing"), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, "export")
    assert not (tmp_path / "new").exists()


def test_bench_json_file_that_cannot_be_written_is_exit_2_before_the_run(tmp_path):
    option = _bench_json_option()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    for target, words in ((tmp_path / "afile" / "r.json", "cannot write there"), (tmp_path / "adir", "folder")):
        # --iters 10**6 runs for hours: only a check made before the benchmark answers within the timeout
        argv = ["bench", "--preset", "tiny", "--iters", "1000000", "--agent-ticks", "0", option, str(target)]
        try:
            done = subprocess.run(
                [sys.executable, "-m", "automot.cli", *argv], capture_output=True, text=True, timeout=120
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{option} {target}: the benchmark ran instead of refusing the output first")
        assert done.returncode == 2
        assert words in _one_error_line(done.stderr, "bench")


def test_export_removes_staging_folders_a_killed_export_left(tmp_path):
    out = tmp_path / "export"
    stale = out / ".staged.k1ll3d00.tmp"
    stale.mkdir(parents=True)
    (stale / "fast_step.onnx").write_bytes(b"half an export")
    assert main(["export", "--preset", "tiny", "--out", str(out), "--overwrite"]) in (0, 4)
    assert not stale.exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".staged.")]
    assert (out / "fast_step.onnx").stat().st_size > len(b"half an export")
