"""The real leaderboard evaluator's command-line parser, rebuilt from its source without importing the module (it
imports ``carla`` and the scenario runner): the statements of its ``main()`` up to ``parse_args()``.

Tests parse the command lines we hand the evaluator (``automot drive --world carla``, docker/run_evaluation.sh) with
the parser that will read them, so a misspelt flag, a value of the wrong type or a missing required option fails
here. The sources come from ``AUTOMOT_SHARED`` (doubles/paths.py); ``missing()`` says why when they are absent.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from doubles.paths import HOW_TO_GET, THIRD_PARTY

EVALUATORS = {
    "leaderboard-2.0": THIRD_PARTY / "leaderboard-2.0" / "leaderboard" / "leaderboard_evaluator.py",
    "bench2drive": THIRD_PARTY / "bench2drive" / "leaderboard" / "leaderboard" / "leaderboard_evaluator.py",
}


def missing(flavour: str = "leaderboard-2.0") -> str | None:
    """Why ``upstream_parser(flavour)`` cannot be built here, or None."""
    path = EVALUATORS[flavour]
    return None if path.is_file() else f"{path} not found: {HOW_TO_GET}"


class UpstreamParseError(AssertionError):
    """The upstream parser rejected a command line (instead of argparse's print-and-exit)."""


def upstream_parser(flavour: str = "leaderboard-2.0") -> argparse.ArgumentParser:
    path: Path = EVALUATORS[flavour]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    body: list[ast.stmt] = []
    for stmt in main.body:
        if "parse_args" in ast.unparse(stmt):
            break
        body.append(stmt)
    else:
        raise AssertionError(f"{path}: main() never calls parse_args()")
    builder = ast.parse("def build_parser():\n    return parser\n")
    func = builder.body[0]
    assert isinstance(func, ast.FunctionDef)
    func.body = [*body, *func.body]
    namespace: dict = {"argparse": argparse, "RawTextHelpFormatter": argparse.RawTextHelpFormatter}
    exec(compile(ast.fix_missing_locations(builder), str(path), "exec"), namespace)
    parser: argparse.ArgumentParser = namespace["build_parser"]()

    def error(message: str):
        raise UpstreamParseError(f"{flavour} leaderboard_evaluator.py rejects the command line: {message}")

    parser.error = error  # type: ignore[method-assign]
    return parser
