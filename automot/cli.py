"""`automot` console script: one parser, subcommands registered by the package that owns them.

Each owning module exposes ``register(subparsers)`` that adds its subparser(s) through `automot.clikit` and sets
``func``; imports are lazy so ``automot --help`` stays fast and a missing optional extra only breaks its own
subcommand. A subcommand reports failure by raising an `automot.errors.AutoMoTError` (or a domain error that
subclasses one): :func:`main` prints it as ONE line, ``automot <command>: error: <message>``, and exits with its
``exit_code`` (the table is in ``automot --help`` and the README). ``AUTOMOT_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Iterator

from automot.errors import EXIT_CODE_HELP, AutoMoTError, ExitCode

# Modules that define register(subparsers).
_SUBCOMMAND_MODULES = [
    "automot.model.cli",
    "automot.model.released.cli",
    "automot.runtime.cli",
    "automot.world.cli",
    "automot.training.cli",
    "automot.evaluation.cli",
    "automot.training.data.cli",
    "automot.debugging.cli",
]

DEBUG_ENV = "AUTOMOT_DEBUG"

EPILOG = f"""exit codes (every command):
{EXIT_CODE_HELP}

Errors are reported as one line on stderr: `automot COMMAND: error: MESSAGE`.
Set {DEBUG_ENV}=1 to see the Python traceback as well."""


def build_parser() -> argparse.ArgumentParser:
    from automot import __version__
    from automot.clivocab import CommandParser

    parser = CommandParser(
        prog="automot",
        description="AutoMoT driving VLA tools",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"automot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a package not written yet or an optional extra missing
            if exc.name and (exc.name == name or name.startswith(exc.name + ".")):
                continue
            raise
        module.register(sub)
    return parser


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that options no parser knew are reported by the sub-command's own
    parser (``automot drive: error: unrecognized arguments: --seeds 0-2``), not by the top one: argparse lets each
    sub-parser pass unknown options up, and the top parser would name no command."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        owner = getattr(args, "command_parser", None) or parser
        owner.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def command_name(args: argparse.Namespace) -> str | None:
    """The (sub-)command the parsed ``args`` run, as error lines name it: ``drive``, ``eval report``."""
    owner = getattr(args, "command_parser", None)
    if owner is None:
        return getattr(args, "command", None)
    return owner.prog.split(" ", 1)[1] if " " in owner.prog else None


def one_line(message: object) -> str:
    """``message`` as one line: its lines stripped and joined ('; ', or ' ' after a line ending in ':')."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    for line in lines[1:]:
        text += (" " if text.endswith(":") else "; ") + line
    return text


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _say(command: str | None, text: str) -> None:
    print(f"automot{' ' + command if command else ''}: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While a command runs, SIGTERM raises KeyboardInterrupt like SIGINT (so both end with exit 130)."""

    def _raise(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    from automot.outputs import forget_created_outs

    forget_created_outs()  # a new command (tests call main() many times in one process)
    try:
        yield
    except BaseException:  # the command failed: a folder it created for its output and left empty goes
        from automot.outputs import remove_created_empty_outs

        remove_created_empty_outs()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    command = None  # until the command line is parsed, errors are reported as `automot: error: ...`
    try:
        with _sigterm_interrupts():
            parser = build_parser()
            args = parse_command_line(parser, argv)  # a bad command line: one line, exit 2 (ExitCode.USAGE)
            func = getattr(args, "func", None)
            if func is None:
                parser.print_help(sys.stderr)
                return int(ExitCode.USAGE)
            command = command_name(args)
            return int(func(args) or ExitCode.OK)
    except AutoMoTError as exc:
        if _debug():
            traceback.print_exc()
        text = one_line(exc) or type(exc).__name__
        # an interrupt is not a mistake: `automot drive: interrupted by SIGINT at tick 12; ...`
        _say(command, text if exc.exit_code == ExitCode.INTERRUPTED else f"error: {text}")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _say(command, "interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        if _debug():
            raise
        detail = one_line(exc)
        _say(
            command,
            f"error: internal error: {type(exc).__name__}{': ' + detail if detail else ''} "
            f"(a bug; set {DEBUG_ENV}=1 to see the traceback)",
        )
        return int(ExitCode.INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
