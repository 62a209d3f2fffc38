"""A refusal writes nothing: commands that find a bad input only once their --out exists remove the folder they
created, so no empty --out is left behind (issue 20, case 15; automot/outputs.py)."""

from __future__ import annotations

import json

import pytest

from automot.cli import main


def _not_a_run(tmp_path):
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    return folder


def _run_without_inputs(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "ticks.jsonl").write_text(json.dumps({"frame": 0}) + "\n")
    (folder / "results.json").write_text(json.dumps({"_checkpoint": {"records": []}}))
    return folder


REFUSALS = {
    "replay: not a run folder": lambda t, out: ["replay", str(_not_a_run(t)), "--out", out],
    "replay: no recorded inputs": lambda t, out: ["replay", str(_run_without_inputs(t)), "--out", out],
    "replay: bad --mode": lambda t, out: ["replay", str(_run_without_inputs(t)), "--out", out, "--mode", "warp"],
    "convert: not a released folder": lambda t, out: ["convert", "--from-automot", str(_not_a_run(t)), "--out", out],
    "export: checkpoint not found": lambda t, out: ["export", "--checkpoint", str(t / "missing"), "--out", out],
    "export: unknown preset": lambda t, out: ["export", "--preset", "gigantic", "--out", out],
    "collect: unknown route": lambda t, out: ["collect", "--routes", "nope", "--out", out],
    "collect: sample/frame mismatch": lambda t, out: [
        "collect",
        "--routes",
        "merge",
        "--frame-every",
        "3",
        "--sample-every",
        "10",
        "--out",
        out,
    ],  # fmt: skip
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_leaves_no_out_folder(tmp_path, capsys, case):
    out = tmp_path / "fresh" / "deeper" / "out"
    argv = REFUSALS[case](tmp_path, str(out))
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith(f"automot {argv[0]}: error: "), err
    assert not (tmp_path / "fresh").exists()  # nor any parent it would have created
