"""Every numeric option of every sub-command is range-checked while the command line is parsed (issue 20): an
out-of-range or wrong-type value exits 2 with ONE stderr line naming the option, before anything is written.

The walk covers every option of every real parser (automot.cli.build_parser), hidden ones included; the values
tried come from each option's declared bounds (just outside them) plus values of the wrong type.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from automot import clikit
from automot.cli import build_parser, main


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from walk(sub, (*path, name))


def bad_values(kind) -> list[str]:
    """Values ``kind`` (a parser's ``type``) must refuse: wrong types, then one step outside each bound."""
    if kind is clikit.seed_list:
        return ["abc", "5-2", "4294967296", "0-4294967296", ","]
    if kind is clikit.image_size:
        return ["big", "0x16", "32x0", "32x-1", "32", "1.5x2"]
    assert isinstance(kind, clikit.Number)
    values = ["abc", ""]
    if kind.kind is int:
        values += ["1.5", "1e3"]
        if kind.lo is not None:
            values.append(str(kind.lo - 1))
        if kind.hi is not None:
            values.append(str(kind.hi + 1))
    else:
        values += ["nan", "inf"]
        if kind.lo is not None:
            values.append(str(kind.lo) if kind.lo_open else str(kind.lo - 0.5))
        if kind.hi is not None:
            values.append(str(kind.hi + 0.5))
    return values


def cases():
    found = []
    for path, parser in walk(build_parser()):
        has_out = any("--out" in a.option_strings for a in parser._actions)
        for action in parser._actions:
            if isinstance(action.type, clikit.Number) or action.type in (clikit.seed_list, clikit.image_size):
                option = action.option_strings[0]
                for value in bad_values(action.type):
                    found.append(pytest.param(path, option, value, has_out, id=f"{' '.join(path)} {option}={value!r}"))
    return found


CASES = cases()


def test_every_numeric_option_is_range_checked():
    untyped = [
        f"{' '.join(path)} {a.option_strings}"
        for path, parser in walk(build_parser())
        for a in parser._actions
        if a.type in (int, float)
    ]
    assert untyped == []  # a bare int / float type takes any value; use clikit.integer / clikit.real
    commands = {c.values[0][0] for c in CASES}
    # the commands the audit hit with bad numbers, and every other command with numeric options
    assert {"export", "train", "collect", "view", "drive", "eval", "bench", "inspect", "data"} <= commands


@pytest.mark.parametrize("path, option, value, has_out", CASES)
def test_bad_number_exits_2_with_one_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys, path, option, value, has_out
):
    monkeypatch.chdir(tmp_path)  # a command that wrote into the current folder would show up here
    fresh = tmp_path / "fresh_out"
    argv = [*path, *(["--out", str(fresh)] if has_out else []), f"{option}={value}"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"automot {' '.join(path)}: error: {option}"), lines[0]
    assert "Traceback" not in err
    assert not fresh.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["export", "--preset", "tiny", "--capacity", "0"], "--capacity 0: must be >= 1"),
        (["export", "--preset", "tiny", "--capacity", "-5"], "--capacity -5: must be >= 1"),
        (["export", "--preset", "tiny", "--opset", "3"], "--opset 3: must be >= 14"),
        (["train", "--config", "c.yaml", "--max-steps", "-1"], "--max-steps -1: must be >= 1"),
        (["collect", "--routes", "merge", "--max-ticks", "0"], "--max-ticks 0: must be >= 1"),
        (["collect", "--routes", "merge", "--seed", "-1"], "--seed -1: must be >= 0"),
        (["view", "RUN", "--spawn", "--image-every", "0"], "--image-every 0: must be >= 1"),
        (["eval", "--routes", "all", "--seeds", "3-1"], "--seeds 3-1: expected a range A-B with A <= B"),
    ],
)
def test_the_audited_values(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*argv, "--out", str(tmp_path / "o")] if argv[0] not in ("view",) else argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"automot {argv[0]}: error: {expected}") and len(err.splitlines()) == 1, err
    assert not Path(tmp_path / "o").exists()
