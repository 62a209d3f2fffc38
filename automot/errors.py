"""Exit codes and the error classes every `automot` subcommand maps onto them.

The lowest layer of the project: `model/`, `runtime/`, `agent/`, `world/` and `training/` may raise these,
and `automot.cli` turns each into one plain line on stderr and its exit code (`automot --help` lists them).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes shared by every subcommand (documented in `automot --help` and the README)."""

    OK = 0
    INTERNAL = 1  # a bug: an unexpected exception (traceback in the log, one line on stderr)
    USAGE = 2  # bad command line, config file or input file: the user must change what they gave
    ENVIRONMENT = 3  # a missing optional extra, simulator, GPU or other part of the machine
    CHECK_FAILED = 4  # the command ran and its check did not pass (parity, validation threshold)
    RUN_FAILED = 5  # the job itself failed (the agent crashed, every episode failed)
    INTERRUPTED = 130  # SIGINT / SIGTERM: partial results were closed and left valid


EXIT_CODE_HELP = "\n".join(
    f"  {int(code):>3}  {text}"
    for code, text in (
        (ExitCode.OK, "success"),
        (ExitCode.INTERNAL, "internal error (a bug: please report it with the log)"),
        (ExitCode.USAGE, "bad command line, config or input file (the message names it)"),
        (ExitCode.ENVIRONMENT, "missing optional extra, simulator, GPU or other dependency"),
        (ExitCode.CHECK_FAILED, "a check did not pass (e.g. export parity)"),
        (ExitCode.RUN_FAILED, "the run itself failed (e.g. the agent crashed)"),
        (ExitCode.INTERRUPTED, "interrupted by SIGINT/SIGTERM (results written so far stay valid)"),
    )
)


class AutoMoTError(Exception):
    """Base of the errors a command reports as one line; ``exit_code`` says how the process ends."""

    exit_code: ExitCode = ExitCode.INTERNAL


class ConfigError(AutoMoTError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range (the message names the field)."""

    exit_code = ExitCode.USAGE


class UsageError(AutoMoTError, ValueError):
    """A bad command-line value or input path (the message names the option or file)."""

    exit_code = ExitCode.USAGE


class EnvironmentProblem(AutoMoTError, RuntimeError):
    """Something the machine lacks: an optional extra, a simulator, a GPU."""

    exit_code = ExitCode.ENVIRONMENT


class CheckFailed(AutoMoTError):
    """The command completed but its acceptance check failed."""

    exit_code = ExitCode.CHECK_FAILED


class RunFailed(AutoMoTError):
    """The job ran and failed (the message says why and where the partial results are)."""

    exit_code = ExitCode.RUN_FAILED


class Interrupted(AutoMoTError):
    """SIGINT / SIGTERM stopped the command after it closed what it had written (the message says what is left)."""

    exit_code = ExitCode.INTERRUPTED
