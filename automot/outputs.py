"""The input/output rule and the refusal rule every `automot` command follows (README, "outputs are never
half-written"), in one place:

* an output (a folder or a file) is never one of the command's inputs nor inside one: decided by
  :func:`automot.fsio.check_output_not_inside`, called by :func:`automot.clikit.prepare_out` for folders and by
  :func:`check_output_file` for files;
* a refusal writes nothing: every check runs before the first byte is written; an output folder
  ``prepare_out`` had to create is removed again by `automot.cli` when the command then fails with nothing in it
  (:func:`remove_created_empty_outs`);
* an output that cannot be written, and a device the machine lacks, are found before the work starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from automot.errors import EnvironmentProblem, UsageError

# Folders prepare_out created in this process (the top-most one of each new path): a command refused after that
# (a bad input found once --out exists) must leave nothing behind, so automot.cli removes those still empty.
_CREATED_OUTS: list[Path] = []


def created_out(folder: Path) -> None:
    """Note a folder this process created for an output (see :func:`remove_created_empty_outs`)."""
    _CREATED_OUTS.append(folder)


def forget_created_outs() -> None:
    """Start a new command: the folders an earlier command of this process created are its own."""
    _CREATED_OUTS.clear()


def first_missing_folder(path: Path) -> Path | None:
    """The top-most folder of ``path`` that does not exist yet (None when ``path`` exists)."""
    missing = None
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        missing, current = current, current.parent
    return missing


def remove_created_empty_outs() -> list[Path]:
    """Remove the folders :func:`prepare_out` created that hold nothing but temporaries / a lock; returns them.

    automot.cli calls it when a command fails: the rule "a refusal writes nothing" then holds for every command,
    even for a check that can only run once the output folder exists. A folder with any output in it stays.
    """
    import shutil

    from automot.fsio import LOCK_NAME, is_temp_name

    def _empty(folder: Path) -> bool:
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink() and not is_temp_name(entry.name):
                if not _empty(entry):
                    return False
            elif not (is_temp_name(entry.name) or entry.name == LOCK_NAME):
                return False
        return True

    removed = []
    while _CREATED_OUTS:
        folder = _CREATED_OUTS.pop()
        with contextlib.suppress(OSError):
            if folder.is_dir() and _empty(folder):
                shutil.rmtree(folder)
                removed.append(folder)
    return removed


def check_output_file(path: str | Path, *, inputs: Iterable[str | Path | None] = (), what: str = "--out") -> Path:
    """Check an output FILE (``--save``, ``--report``, ``--json``) before the command reads or computes anything.

    The same rule as :func:`prepare_out` for folders (automot.fsio.check_output_not_inside, the one place it is
    decided): the file is never one of the command's ``inputs`` (files or folders) nor inside one of them, so no
    command replaces what it reads. It must not be a folder, and its folder must exist (or be creatable) and be
    writable: an unwritable output is a usage error (exit 2) found before the work starts, not after it.
    """
    from automot.fsio import check_output_not_inside

    if path is None or not str(path).strip():
        raise UsageError(f"{what}: no output file given")
    out = Path(path)
    for src in inputs:
        if src is not None and str(src).strip():
            check_output_not_inside(src, out, what)
    if out.is_dir():
        raise UsageError(f"{what} {out}: is a folder; give a file name")
    if out.exists() and not os.access(out, os.W_OK):
        raise UsageError(f"{what} {out}: cannot write there (the file is read-only)")
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {out}: cannot write there ({parent} is not a writable folder)")
    return out


def check_device(device: str | None, what: str = "--device") -> str:
    """``cpu`` / ``cuda`` / ``cuda:N`` checked before a model is loaded: CUDA asked for on a machine (or a torch
    build) without it is an environment problem (exit 3), a malformed name a usage error (exit 2)."""
    import torch

    name = str(device or "cpu")
    if name == "auto":
        return name
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"{what} {name!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch was built without CUDA" if torch.version.cuda is None else "torch sees no GPU"
            raise EnvironmentProblem(f"{what} {name}: no CUDA device ({why})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise EnvironmentProblem(f"{what} {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return name
