"""The argparse wiring every `automot` subcommand module shares, and the helpers they raise errors with.

Each subcommand module keeps its own ``register(sub)`` and builds its parser with :func:`add_command` and the
option helpers below. Failures are raised, never printed: a command raises an :class:`automot.errors.AutoMoTError`
subclass (or a domain error that subclasses one) and `automot.cli.main` prints it as one line with its exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from automot.clivocab import (
    CHECKPOINT_HELP,
    DEFAULT_WORLD,
    SEED,
    WORLDS,
    CommandParser,
    DeprecatedAlias,
    Number,
    add_checkpoint,
    add_deprecated_alias,
    add_json,
    add_json_out,
    add_seeds,
    add_set,
    add_ticks,
    add_world,
    checkpoint_override,
    image_size,
    integer,
    real,
    seed_list,
)
from automot.errors import (
    AutoMoTError,
    CheckFailed,
    ConfigError,
    EnvironmentProblem,
    ExitCode,
    Interrupted,
    RunFailed,
    UsageError,
)
from automot.outputs import (  # the input/output and refusal rules (re-exported: commands use clikit)
    check_device,
    check_output_file,
    created_out,
    first_missing_folder,
    remove_created_empty_outs,
)

EXIT_CODES_EPILOG = "exit codes: see `automot --help`"

_ERROR_FOR_CODE: dict[ExitCode, type[AutoMoTError]] = {
    ExitCode.USAGE: UsageError,
    ExitCode.ENVIRONMENT: EnvironmentProblem,
    ExitCode.CHECK_FAILED: CheckFailed,
    ExitCode.RUN_FAILED: RunFailed,
}


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    func: Callable[[argparse.Namespace], int | None],
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` whose handler is ``func(args)``; the description defaults to the help line.

    The parser is also stored as ``args.command_parser`` (a nested sub-command's replaces its parent's), so that
    `automot.cli.main` reports options no parser knew through the sub-command's own parser, and names the
    sub-command (``automot data doctor: error: ...``) in every error line.
    """
    parser = sub.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func, command_parser=parser)
    return parser


def add_subcommands(parser: argparse.ArgumentParser, dest: str, metavar: str) -> argparse._SubParsersAction:
    """Sub-commands of a command (``automot eval report``, ``automot data doctor``), each added with
    :func:`add_command`; without one the command's own ``func`` runs."""
    return parser.add_subparsers(dest=dest, metavar=metavar, parser_class=CommandParser)


def add_model_source(
    parser: argparse.ArgumentParser,
    *,
    preset_default: str | None = None,
    required: bool = False,
    preset_help: str = "model preset (tiny, small, automot-4b) or a model config YAML",
    checkpoint_help: str = "",
) -> None:
    """The mutually exclusive ``--preset NAME`` / ``--checkpoint DIR`` pair that names the model a command uses."""
    group = parser.add_mutually_exclusive_group(required=required)
    if preset_default is not None:
        preset_help = f"{preset_help} (default: {preset_default})"
    group.add_argument("--preset", default=preset_default, help=preset_help)
    add_checkpoint(group, checkpoint_help)


def add_out(parser: argparse.ArgumentParser, help: str = "output folder", *, required: bool = False) -> None:
    parser.add_argument("--out", metavar="DIR", required=required, help=help)


def add_overwrite(
    parser: argparse.ArgumentParser,
    help: str = "write into an existing, non-empty output folder, replacing the files this command writes",
) -> None:
    """``--overwrite``: the opt-in :func:`prepare_out` asks for before it accepts a non-empty output folder."""
    parser.add_argument("--overwrite", action="store_true", help=help)


def prepare_out(
    path: str | Path | None,
    overwrite: bool = False,
    *,
    source: str | Path | Iterable[str | Path] | None = None,
    what: str = "--out",
    accept_existing: Callable[[Path], bool] | None = None,
    create: bool = True,
) -> Path:
    """Check and create an output folder before a command touches anything; UsageError (exit 2) otherwise.

    The shared rule of every command that writes a folder (issue #12, "never destroy what is on disk"):

    * ``path`` must not be ``source`` (one path or several: the inputs the command reads) or lie inside it;
    * ``path`` must not be an existing file;
    * an existing folder that holds anything but leftover temporaries (``.NAME.XXXX.tmp``) is refused unless
      ``overwrite`` (the command's ``--overwrite``, see :func:`add_overwrite`) or ``accept_existing(path)`` is
      true (e.g. a dataset that ``collect`` appends to); the lock file of :func:`claim_out` does not count. ``overwrite`` never deletes the folder here: the command
      replaces the files it writes, each atomically (automot.fsio); files it does not write stay;
    * the folder is created (with its parents) and must be writable. ``create=False`` leaves a missing folder
      for the command to create once its inputs are known to be good (its nearest existing parent must be a
      writable folder).

    Returns ``path`` as a Path. ``what`` names the option in the messages.
    """
    from automot.fsio import LOCK_NAME, check_output_not_inside, is_temp_name, temp_path_for

    if path is None or not str(path).strip():
        raise UsageError(f"{what}: no output folder given")
    out = Path(path)
    sources = [] if source is None else [source] if isinstance(source, (str, Path)) else list(source)
    for src in sources:
        check_output_not_inside(src, out, what)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{what} {out}: is a file, not a folder; choose a folder name")
    if out.is_dir() and not overwrite and not (accept_existing is not None and accept_existing(out)):
        try:
            entries = [p.name for p in out.iterdir() if not is_temp_name(p.name) and p.name != LOCK_NAME]
        except OSError as exc:
            raise UsageError(f"{what} {out}: cannot be read ({exc.strerror or exc})") from None
        if entries:
            raise UsageError(
                f"{what} {out}: exists and is not empty ({len(entries)} entries); pass --overwrite to replace "
                "its files, or choose another folder"
            )
    if not create and not out.exists():
        parent = out.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {out}: cannot write there ({parent} is not a writable folder)")
        return out
    first_missing = first_missing_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if first_missing is not None:  # removed again if the command is refused before it writes (cli.main)
            created_out(first_missing)
        probe = temp_path_for(out / "write-test")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{what} {out}: cannot write there ({exc.strerror or exc})") from None
    return out


@contextlib.contextmanager
def claim_out(
    path: str | Path | None,
    overwrite: bool = False,
    *,
    source: str | Path | Iterable[str | Path] | None = None,
    what: str = "--out",
    accept_existing: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """:func:`prepare_out`, then hold the folder's lock (automot.fsio.lock_out) for the block; yields the folder.

    The folder is checked (not a file, writable, not inside ``source``) and created, then locked, and only then
    checked for being non-empty: a second process on the same folder is refused (UsageError, exit 2) with a
    message naming the process that holds it, whatever the folder holds. The lock file is removed on exit.
    """
    from automot.fsio import lock_out

    out = prepare_out(path, True, source=source, what=what)
    with lock_out(out, what=what):
        prepare_out(out, overwrite, what=what, accept_existing=accept_existing)
        yield out


class InterruptFlag:
    """Set by :func:`deferred_interrupts`' handler: ``signal_name`` is 'SIGINT' / 'SIGTERM' once one arrived."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def __bool__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def deferred_interrupts(command: str = "", notice: str = "finishing the current step") -> Iterator[InterruptFlag]:
    """While the block runs, SIGINT / SIGTERM only set the yielded flag (checked by the command between steps).

    The first signal prints one notice line on stderr (``automot COMMAND: SIGINT: NOTICE; send it again to stop
    at once``); a second one raises KeyboardInterrupt where the program is (automot.cli exits 130). Outside the
    main thread signals cannot be handled: the flag then never sets and nothing is installed.
    """
    flag = InterruptFlag()

    def _handle(signum, frame):  # noqa: ARG001 - signal handler signature
        if flag.signal_name is not None:
            raise KeyboardInterrupt
        flag.signal_name = signal.Signals(signum).name
        prog = f"automot {command}" if command else "automot"
        print(f"{prog}: {flag.signal_name}: {notice}; send it again to stop at once", file=sys.stderr, flush=True)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _handle)
    except ValueError:  # not the main thread
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        previous = {}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_device(parser: argparse.ArgumentParser, help: str = "cpu | cuda | cuda:N") -> None:
    parser.add_argument("--device", default="cpu", help=f"{help} (default: cpu)")


def require(condition: Any, message: str) -> None:
    """Raise UsageError(message) unless ``condition`` holds (for checks argparse cannot express)."""
    if not condition:
        raise UsageError(message)


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it is an existing file, else UsageError naming ``what`` (e.g. '--config')."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} {p}: file not found")
    return p


def split_list(value: str, option: str, choices: Iterable[str] | None = None) -> list[str]:
    """A comma-separated option value as a list; UsageError for unknown items when ``choices`` is given."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if choices is not None:
        allowed = list(choices)
        unknown = [v for v in items if v not in allowed]
        if unknown:
            raise UsageError(f"{option}: unknown value(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if not items:
        raise UsageError(f"{option}: no value given")
    return items


def parse_size(value: str, option: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (width, height), UsageError otherwise."""
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise UsageError(f"{option} {value!r}: expected WIDTHxHEIGHT, e.g. 640x320") from None
    if w < 1 or h < 1:
        raise UsageError(f"{option} {value!r}: width and height must be >= 1")
    return w, h


def error_for(code: ExitCode, message: str) -> AutoMoTError:
    """An error of the class that exits with ``code`` (to re-raise a wrapped cause under its own code)."""
    return _ERROR_FOR_CODE.get(ExitCode(code), AutoMoTError)(message)


__all__ = [
    "CHECKPOINT_HELP",
    "DEFAULT_WORLD",
    "SEED",
    "WORLDS",
    "CommandParser",
    "DeprecatedAlias",
    "Number",
    "add_checkpoint",
    "checkpoint_override",
    "image_size",
    "add_deprecated_alias",
    "add_json",
    "add_json_out",
    "add_seeds",
    "add_set",
    "add_subcommands",
    "add_ticks",
    "add_world",
    "integer",
    "real",
    "seed_list",
    "EXIT_CODES_EPILOG",
    "AutoMoTError",
    "CheckFailed",
    "ConfigError",
    "EnvironmentProblem",
    "ExitCode",
    "Interrupted",
    "RunFailed",
    "UsageError",
    "add_command",
    "add_device",
    "add_model_source",
    "add_no_progress",
    "add_out",
    "add_overwrite",
    "check_device",
    "check_output_file",
    "claim_out",
    "deferred_interrupts",
    "InterruptFlag",
    "error_for",
    "parse_size",
    "prepare_out",
    "remove_created_empty_outs",
    "require",
    "require_file",
    "split_list",
]
