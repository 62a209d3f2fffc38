"""The one `automot` CLI vocabulary: option helpers every sub-command builds its parser with (re-exported by
`automot.clikit`, whose helpers the sub-command modules call).

A name means one thing in every command (README, "One CLI vocabulary"; checked by tests/cli/test_cli_vocabulary.py):
``--out DIR`` a folder written, ``--json`` a switch (JSON on stdout), ``--json-out PATH`` a JSON file,
``--checkpoint DIR`` a model folder, ``--set KEY=VALUE`` a config override, ``--seed N`` one seed and ``--seeds
RANGE`` several, ``--ticks N`` a cap on ticks (a window is ``--tick-range A:B``), ``--world`` defaulting to the
embedded world. Numeric options are range-checked at parse time (:class:`Number`): a wrong value is one line, exit
2, before anything is written.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

from automot.errors import ExitCode, UsageError


class CommandParser(argparse.ArgumentParser):
    """Every `automot` parser (the top one and each sub-command's): a usage mistake is ONE stderr line.

    argparse prints the whole usage block before its message; a user reading a terminal (or a log) wants the
    message, named by the (sub-)command whose parser found it: ``automot eval report: error: unrecognized
    arguments: B (see `automot eval report --help`)``, exit 2.
    """

    def error(self, message: str) -> NoReturn:
        text = " ".join(str(message).split())
        # A value that failed a Number / seed check: `--seed -1: must be >= 0`, as the commands' own checks say it.
        bad_value = re.fullmatch(r"argument (\S+): got (.*?), ((?:must|expected) .*)", text)
        if bad_value:
            text = f"{bad_value[1].split('/')[0]} {bad_value[2]}: {bad_value[3]}"
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {text} (see `{self.prog} --help`)\n")


DEFAULT_WORLD = "embedded"  # drive and eval: the world that needs no simulator installed
WORLDS = ("embedded", "carla")
CHECKPOINT_HELP = "model folder (config.yaml + model.safetensors)"
SEEDS_MAX_COUNT = 10_000  # one eval job per (route, seed): more is a typo, not an evaluation
SEED_MAX = 2**32 - 1  # numpy's legacy seeding range, used by the embedded world's traffic and sensor noise


class Number:
    """An argparse ``type`` that parses ``int`` / ``float`` and checks its range at parse time.

    A wrong type or a value out of range is an argparse error (one line, exit 2) before the command starts, so it
    never writes anything. ``lo`` / ``hi`` are inclusive bounds (``lo_open``: strictly above ``lo``); floats must
    be finite. The bounds stay readable (``kind``, ``lo``, ``hi``) for the CLI fuzz test.
    """

    def __init__(self, kind: type, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False):
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.__name__ = kind.__name__  # what argparse names in its own messages

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            noun = "an integer" if self.kind is int else "a number"
            raise argparse.ArgumentTypeError(f"got {text!r}, expected {noun}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"got {text!r}, expected a finite number")
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            raise argparse.ArgumentTypeError(f"got {text}, must be {'>' if self.lo_open else '>='} {self.lo}")
        if self.hi is not None and value > self.hi:
            raise argparse.ArgumentTypeError(f"got {text}, must be <= {self.hi}")
        return value

    def __repr__(self) -> str:
        return f"Number({self.kind.__name__}, lo={self.lo}, hi={self.hi}, lo_open={self.lo_open})"


def integer(lo: int | None = None, hi: int | None = None) -> Number:
    """An int option checked at parse time: ``type=clikit.integer(1)`` for a count >= 1."""
    return Number(int, lo, hi)


def real(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> Number:
    """A finite float option checked at parse time: ``type=clikit.real(0, lo_open=True)`` for a time > 0."""
    return Number(float, lo, hi, lo_open=lo_open)


SEED = integer(0, SEED_MAX)


def seed_list(text: str) -> list[int]:
    """``--seeds`` value: ``0-4``, ``0,3`` or a mix (``0-2,7``) -> the seeds in order, without repeats."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        a, dash, b = part.partition("-")
        try:
            first, last = int(a), int(b if dash else a)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text}, expected seeds like 0-4 or 0,3") from None
        if first > last:
            raise argparse.ArgumentTypeError(f"got {text}, expected a range A-B with A <= B, not {part}")
        if first < 0 or last > SEED_MAX:  # checked before the range is expanded (0-4294967296 is 4e9 seeds)
            raise argparse.ArgumentTypeError(f"got {text}, must be seeds in 0 .. 2**32-1")
        if len(seeds) + last - first >= SEEDS_MAX_COUNT:
            raise argparse.ArgumentTypeError(f"got {text}, must be at most {SEEDS_MAX_COUNT} seeds")
        seeds += range(first, last + 1)
    if not seeds:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected seeds like 0-4 or 0,3")
    return list(dict.fromkeys(seeds))


seed_list.__name__ = "seeds"


def image_size(text: str) -> tuple[int, int]:
    """``--image-size WIDTHxHEIGHT`` -> (width, height), both >= 1, checked at parse time."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected WIDTHxHEIGHT, e.g. 640x320") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"got {text}, must be WIDTHxHEIGHT with both >= 1")
    return width, height


image_size.__name__ = "size"


def add_seeds(parser: argparse.ArgumentParser, help: str = "seeds, e.g. 0-4 or 0,3", default: str = "0") -> None:
    """``--seeds RANGE``: several seeds (``--seed N`` is for exactly one)."""
    parser.add_argument(
        "--seeds", type=seed_list, default=default, metavar="RANGE", help=f"{help} (default: {default})"
    )


def add_ticks(parser: argparse.ArgumentParser, help: str = "tick limit per route (default: the route's)") -> None:
    """``--ticks N``: a cap on the ticks driven (a tick range is ``--tick-range A:B``)."""
    parser.add_argument("--ticks", type=integer(1), metavar="N", help=help)


def add_world(parser: argparse.ArgumentParser, choices: Iterable[str] = WORLDS) -> None:
    """``--world``: the same default for every command that drives (the embedded world: no CARLA needed)."""
    choices = tuple(choices)
    parser.add_argument(
        "--world",
        choices=choices,
        default=DEFAULT_WORLD,
        help=f"simulator: {' | '.join(choices)} (default: {DEFAULT_WORLD}, which needs no CARLA)",
    )


def add_checkpoint(parser: Any, help: str = "") -> None:
    """``--checkpoint DIR``: always a model folder; ``help`` adds what the command does with it."""
    text = CHECKPOINT_HELP + (f"; {help}" if help else "")
    parser.add_argument("--checkpoint", metavar="DIR", default=None, help=text)


def checkpoint_override(path: str) -> str:
    """The ``--set`` item that makes an agent config drive with the model folder ``path`` (``--checkpoint DIR`` of
    drive / eval); UsageError (exit 2) unless ``path`` is a model folder. Absolute: the merged config is written
    elsewhere, and a relative model.checkpoint is read against the config file's folder."""
    import json
    from pathlib import Path

    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"--checkpoint {folder}: model folder not found")
    if not (folder / "config.yaml").is_file():
        raise UsageError(f"--checkpoint {folder}: not a model folder (no config.yaml)")
    return f"model.checkpoint={json.dumps(str(folder.resolve()))}"  # JSON is YAML: any path parses as one string


def add_json(parser: Any, help: str = "print JSON to stdout instead of text") -> None:
    """``--json``: a switch everywhere; a JSON file is ``--json-out PATH`` (:func:`add_json_out`)."""
    parser.add_argument("--json", action="store_true", help=help)


def add_json_out(parser: Any, help: str = "also write the JSON document to this file") -> None:
    parser.add_argument("--json-out", metavar="PATH", help=help)


def add_set(parser: Any, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable, into ``args.overrides``) on every command that reads a config; ``help``
    says which config. Apply with `automot.config.apply_overrides`, then validate like the file."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{help}; repeatable, dotted KEY, VALUE parsed as YAML, validated like the file",
    )


class DeprecatedAlias(argparse.Action):
    """An old option name kept for one release: works like ``replacement`` and prints one warning line."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str = "", **kwargs: Any) -> None:
        self.replacement = replacement
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001 - argparse's signature
        print(
            f"{parser.prog}: warning: {option_string} is deprecated and will be removed; use {self.replacement}",
            file=sys.stderr,
            flush=True,
        )
        setattr(namespace, self.dest, values)


def add_deprecated_alias(parser: Any, old: str, replacement: str, dest: str, **kwargs: Any) -> None:
    """``old`` as a hidden alias of ``replacement`` (same ``dest``; ``kwargs``: its ``type`` / ``metavar``)."""
    parser.add_argument(
        old, dest=dest, action=DeprecatedAlias, replacement=replacement, default=argparse.SUPPRESS,
        help=argparse.SUPPRESS, **kwargs,
    )  # fmt: skip
