"""`automot` console script: one parser, subcommands registered by the package that owns them.

Each owning module exposes ``register(subparsers)`` that adds its subparser and sets ``func``; imports
are lazy so ``automot --help`` stays fast and a missing optional extra only breaks its own subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, description) — module must define register(subparsers).
_SUBCOMMAND_MODULES = [
    "automot.model.cli",
    "automot.model.released.cli",
    "automot.runtime.cli",
    "automot.world.cli",
    "automot.training.cli",
]


def build_parser() -> argparse.ArgumentParser:
    from automot import __version__

    parser = argparse.ArgumentParser(prog="automot", description="AutoMoT driving VLA tools")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
