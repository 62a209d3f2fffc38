"""One CLI vocabulary (issue 19, item 7): every sub-command's real parser, built by automot.cli, follows the rules of
the README's "One CLI vocabulary" table. The expected sets below are written from that table, not read from the
parsers, so a command that drops or renames an option fails here."""

from __future__ import annotations

import argparse

import pytest

from automot import clikit
from automot.cli import build_parser, main

# The README table: commands that write a folder (--out DIR), read a config (--set), run a model (--checkpoint).
WRITES_A_FOLDER = {"convert", "export", "drive", "train", "collect", "eval", "replay"}
READS_A_CONFIG = {"drive", "eval", "train", "collect"}
RUNS_A_MODEL = {"model", "bench", "export", "drive", "eval", "replay"}
# Sub-commands written `automot X Y` (argparse sub-parsers, not parsed by hand).
NESTED = {"eval report", "data doctor"}


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) for every sub-command parser below ``parser``, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from walk(sub, (*path, name))


COMMANDS = {" ".join(path): sub for path, sub in walk(build_parser())}


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {opt: action for action in parser._actions for opt in action.option_strings}


def test_every_command_is_walked():
    # the README's command list; a command missing here is one the rules below never see
    expected = {"model", "convert", "bench", "export", "drive", "train", "collect", "eval", "data", "inspect"}
    expected |= {"replay", "view"} | NESTED
    assert expected <= set(COMMANDS), sorted(expected - set(COMMANDS))


def test_out_is_a_folder_wherever_a_folder_is_written():
    for name in WRITES_A_FOLDER:
        action = options(COMMANDS[name]).get("--out")
        assert action is not None, f"{name}: no --out"
        assert action.metavar == "DIR" and action.nargs is None, name
    for name, parser in COMMANDS.items():  # and --out never names anything but a folder
        action = options(parser).get("--out")
        assert action is None or action.metavar == "DIR", name


def test_json_is_a_switch_everywhere_and_a_file_is_json_out():
    seen = 0
    for name, parser in COMMANDS.items():
        opts = options(parser)
        if "--json" in opts:
            seen += 1
            assert isinstance(opts["--json"], argparse._StoreTrueAction), f"{name}: --json is not a switch"
        if "--json-out" in opts:
            assert opts["--json-out"].metavar == "PATH" and opts["--json-out"].nargs is None, name
    assert seen >= 5  # model, bench, train, inspect, data doctor
    assert "--json-out" in options(COMMANDS["bench"])


def test_checkpoint_is_always_a_model_folder():
    for name, parser in COMMANDS.items():
        action = options(parser).get("--checkpoint")
        if name in RUNS_A_MODEL:
            assert action is not None, f"{name} runs a model but has no --checkpoint"
        if action is not None:
            assert action.help.startswith("model folder"), f"{name}: --checkpoint {action.help!r}"
            assert action.metavar == "DIR", name
    # the CARLA evaluator's results file, which the leaderboard itself calls --checkpoint, has its own name
    assert "--results-file" in options(COMMANDS["drive"])


def test_set_comes_from_one_helper_on_every_command_that_reads_a_config():
    reference = argparse.ArgumentParser()
    clikit.add_set(reference, "x")
    ref = options(reference)["--set"]
    for name in READS_A_CONFIG:
        action = options(COMMANDS[name]).get("--set")
        assert action is not None, f"{name}: no --set"
        assert isinstance(action, argparse._AppendAction) and action.dest == "overrides", name
        assert action.metavar == ref.metavar and action.default == [], name
        assert action.help.endswith(ref.help.split("x", 1)[1]), name  # the helper's wording, not a copy


def test_no_output_dir_except_as_a_deprecated_alias(capsys):
    for name, parser in COMMANDS.items():
        for opt, action in options(parser).items():
            if opt in ("--output-dir", "--max-ticks"):
                assert isinstance(action, clikit.DeprecatedAlias), f"{name} {opt}"
                assert action.help == argparse.SUPPRESS, f"{name} {opt}"
    args = build_parser().parse_args(["train", "--config", "c.yaml", "--output-dir", "runs/x"])
    assert args.out == "runs/x"
    assert "--output-dir is deprecated" in capsys.readouterr().err


def test_drive_and_eval_default_to_the_same_world():
    drive, evaluate = (options(COMMANDS[n])["--world"] for n in ("drive", "eval"))
    assert drive.default == evaluate.default == "embedded"  # needs no CARLA
    assert "needs no CARLA" in drive.help and "needs no CARLA" in evaluate.help


def test_seed_is_one_seed_and_seeds_a_range():
    for name, parser in COMMANDS.items():
        opts = options(parser)
        if "--seed" in opts:
            assert isinstance(opts["--seed"].type, clikit.Number) and opts["--seed"].type.kind is int, name
        if "--seeds" in opts:
            assert opts["--seeds"].type is clikit.seed_list and opts["--seeds"].metavar == "RANGE", name
    assert "--seeds" in options(COMMANDS["eval"])
    assert clikit.seed_list("0-2,7,1") == [0, 1, 2, 7]


def test_ticks_is_a_cap_everywhere():
    for name, parser in COMMANDS.items():
        action = options(parser).get("--ticks")
        if action is not None:
            assert isinstance(action.type, clikit.Number) and (action.type.kind, action.type.lo) == (int, 1), name
    assert {"drive", "eval", "collect"} <= {n for n, p in COMMANDS.items() if "--ticks" in options(p)}
    assert "--tick-range" in options(COMMANDS["replay"])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_sub_command_reports_its_own_errors(name, capsys):
    with pytest.raises(SystemExit) as info:
        main([*name.split(), "--no-such-option"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err  # one line, no usage block
    line = err.splitlines()[0]
    assert line.startswith(f"automot {name}: error: "), line
    # the option is named, unless a required argument of this sub-command is missing (reported first)
    assert "unrecognized arguments: --no-such-option" in line or "required" in line, line


def test_unknown_option_after_a_valid_command_line_names_the_sub_command(capsys):
    with pytest.raises(SystemExit):
        main(["drive", "--route", "merge", "--seeds", "0-2"])
    assert capsys.readouterr().err.startswith("automot drive: error: unrecognized arguments: --seeds 0-2")


def test_train_help_shows_out_and_set(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--out DIR" in out and "--set KEY=VALUE" in out and "--output-dir" not in out
