"""Atomic file output: every file a command writes appears whole or not at all.

Rule (issue #12): a file is written to a temporary name in the *same* folder, flushed and fsynced, then
``os.replace``d onto its final name. A reader, a crash or a SIGKILL therefore sees the old file or the whole new
one, never a truncated one. Temporary names start with ``.`` and end with ``.tmp`` (``.model.safetensors.k3j9.tmp``)
so they are never mistaken for outputs; they are removed on failure and on KeyboardInterrupt.

* :func:`atomic_write_text`, :func:`atomic_write_bytes`, :func:`atomic_write_json` write a whole payload;
* :func:`atomic_path` is for writers that want a path (safetensors ``save_file``, ``torch.save``, ONNX export,
  PIL): it yields the temporary path and replaces the target when the block ends without an exception;
* :class:`StagedFiles` writes several files of one output folder as temporaries first and renames them all only
  when every one is complete (``automot convert``, ``automot export``): a kill during the long writing phase
  leaves an earlier output untouched;
* :func:`check_output_not_inside` refuses an output folder that is the source folder or inside it;
* :func:`lock_out` / :class:`FolderLock` stop a second process from writing the same output folder (an
  ``flock``ed ``.automot.lock`` file naming its holder; a lock left by a killed process is taken over).

Appending streams (``ticks.jsonl``, ``samples.jsonl``, video) are not written through here: each line or frame
is valid on its own when the stream is cut short.

``AUTOMOT_TEST_SLOW_COMMIT`` (test-only hook): seconds to sleep after a temporary file is complete and before it
is renamed, so a test can SIGKILL a writer at that point (tests/cli/test_outputs_on_disk.py). Never set it otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from automot.errors import UsageError

TMP_SUFFIX = ".tmp"
LOCK_NAME = ".automot.lock"  # the lock file of an output folder in use (lock_out); not an output
TEST_SLOW_COMMIT_ENV = "AUTOMOT_TEST_SLOW_COMMIT"  # test-only: see the module docstring

__all__ = [
    "LOCK_NAME",
    "TMP_SUFFIX",
    "FolderLock",
    "StagedFiles",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_not_inside",
    "is_temp_name",
    "lock_out",
    "remove_temp_dirs",
    "temp_path_for",
]


def is_temp_name(name: str) -> bool:
    """True for the names this module gives temporary files (``.NAME.XXXX.tmp``)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open(path, "w") would give; mkstemp alone gives 0600


def temp_path_for(path: str | os.PathLike) -> Path:
    """Create (empty) and return a fresh temporary file next to ``path``: ``.NAME.XXXXXXXX.tmp``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
    except OSError:
        pass
    finally:
        os.close(fd)
    return Path(tmp)


def _fsync_file(path: Path) -> None:
    """fsync ``path`` and give it the mode a plain ``open(path, "w")`` would (some writers create 0600 files)."""
    try:
        os.chmod(path, _FILE_MODE)
    except OSError:
        pass
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on this platform / filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _test_pause() -> None:
    delay = os.environ.get(TEST_SLOW_COMMIT_ENV)
    if delay:
        time.sleep(float(delay))


def _commit(tmp: Path, path: Path) -> None:
    """fsync ``tmp`` and rename it onto ``path`` (then fsync the folder so the rename itself is durable)."""
    if not tmp.exists():
        raise FileNotFoundError(f"{tmp}: the writer did not create the temporary file for {path}")
    _fsync_file(tmp)
    _test_pause()
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it is fsynced and renamed onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is left as it was.
    The writer may replace the (empty, pre-created) temporary file; it must write to exactly that path, and
    give its format explicitly where it would guess it from the extension (the name ends with ``.tmp``).
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename); returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, newline: bool = True, **kw) -> Path:
    """``json.dumps(obj, indent=indent, **kw)`` (+ a final newline) written atomically to ``path``."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, **kw) + ("\n" if newline else ""))


class StagedFiles:
    """Several files of one output folder, all written first into a hidden staging folder and moved together.

    ::

        with StagedFiles(out) as stage:
            save_file(tensors, stage.path("model.safetensors"))
            stage.write_text("config.yaml", text)
        # here every file has its final name; after an exception none was touched and nothing staged is left

    The staging folder is ``OUT/.staged.XXXXXXXX.tmp/`` and files keep their real names inside it, so writers that
    look at the extension or put side files next to theirs (ONNX external data) work unchanged; every file found
    there on success is moved into ``OUT``. Nothing under a final name changes until every file is complete, so a
    failure or a kill during the (long) writing phase leaves an earlier output as it was; only the final renames
    (milliseconds) can be cut. A staging folder left by a SIGKILL is hidden and clearly temporary.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.stage: Path | None = None

    def _stage(self) -> Path:
        if self.stage is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.stage = Path(tempfile.mkdtemp(prefix=".staged.", suffix=TMP_SUFFIX, dir=self.folder))
        return self.stage

    @property
    def staging_dir(self) -> Path:
        """The hidden staging folder itself, for writers that take a folder (``save_pretrained(dir)``); every
        plain file they put there is moved into the output folder on commit."""
        return self._stage()

    def path(self, name: str) -> Path:
        """Where to write final file ``name`` (a plain name inside the folder) while it is staged."""
        if not name or "/" in name or os.sep in name or name in (".", "..") or is_temp_name(name):
            raise ValueError(f"StagedFiles.path: {name!r} is not a plain output file name")
        return self._stage() / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        tmp = self.path(name)
        tmp.write_bytes(data)
        return tmp

    def write_text(self, name: str, text: str, encoding: str = "utf-8") -> Path:
        return self.write_bytes(name, text.encode(encoding))

    def write_json(self, name: str, obj: Any, *, indent: int | None = 2, **kw) -> Path:
        return self.write_text(name, json.dumps(obj, indent=indent, **kw) + "\n")

    def commit(self, *, last: Iterable[str] = (), replace: Iterable[str] = ()) -> list[Path]:
        """fsync every staged file, then move each onto its final name; returns the final paths.

        ``last``: file names moved after all the others (e.g. ``results.json``, so a reader that sees the new
        record also sees the new files it describes). ``replace``: names of the output set that this commit
        replaces as a whole: any of them in the folder that was not staged is removed (before the ``last``
        files move), so an earlier run's extra files do not stay mixed with the new ones; a name that is a folder
        (``inputs``) loses every file the commit did not stage, and the folder goes once it is empty.
        """
        if self.stage is None:
            return []
        last = set(last)
        files = sorted(p for p in self.stage.rglob("*") if not p.is_dir())
        files.sort(key=lambda p: str(p.relative_to(self.stage)) in last)  # stable: the ``last`` ones at the end
        for f in files:
            if not f.is_file():
                raise ValueError(f"{f}: only plain files can be staged")
            _fsync_file(f)
        _test_pause()
        staged = {str(f.relative_to(self.stage)) for f in files}
        stale = []
        for name in replace:
            old = self.folder / name
            if old.is_dir() and not old.is_symlink():
                stale += [f for f in sorted(old.rglob("*")) if str(f.relative_to(self.folder)) not in staged]
                stale.append(old)  # removed last, if empty
            elif name not in staged:
                stale.append(old)
        done = []
        for f in files:  # sub-folders a writer made (rare) are recreated inside the output folder
            name = str(f.relative_to(self.stage))
            if name in last:
                _remove_stale(stale)
                stale = []
            dest = self.folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
            done.append(dest)
        _remove_stale(stale)
        _fsync_dir(self.folder)
        self.discard()
        return done

    def discard(self) -> None:
        """Remove the staging folder and whatever is still in it."""
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage = None

    def __enter__(self) -> StagedFiles:
        self._stage()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.discard()


def _remove_stale(paths: list[Path]) -> None:
    """Unlink the files among ``paths``, then remove the folders among them that are left empty."""
    for old in paths:
        if old.is_file() or old.is_symlink():
            old.unlink()
    for old in sorted((p for p in paths if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            old.rmdir()


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(path))).resolve()


def check_output_not_inside(source: str | os.PathLike, out: str | os.PathLike, what: str = "--out") -> None:
    """UsageError when ``out`` is the folder (or file) ``source`` or lies inside it (symlinks resolved).

    Writing an output over its own input would overwrite (or delete, with ``--overwrite``) what is being read.
    """
    src, dst = _resolved(source), _resolved(out)
    if dst == src:
        raise UsageError(f"{what} {out}: is the source {source} itself; choose another output folder")
    if src in dst.parents:
        raise UsageError(f"{what} {out}: lies inside the source {source}; choose a folder outside it")


def remove_temp_dirs(folder: str | os.PathLike, prefix: str = ".staged.") -> list[Path]:
    """Remove the hidden temporary folders ``PREFIXXXXX.tmp`` a killed writer left in ``folder``; returns them.

    Only call it while holding the folder's lock (:func:`lock_out`): otherwise they may be another writer's.
    """
    removed = []
    with contextlib.suppress(OSError):
        for entry in Path(folder).iterdir():
            if entry.name.startswith(prefix) and is_temp_name(entry.name) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


class FolderLock:
    """An exclusive lock on an output folder: ``FOLDER/.automot.lock``, held with ``flock`` while a command writes.

    The file holds the holder's pid, host, start time and command line (JSON), so the refusal can name it. The
    kernel drops an ``flock`` when its process dies, so a lock file left by a SIGKILLed process is simply taken
    over (no pid guessing). :meth:`release` removes the file. Where ``fcntl`` does not exist (Windows) an
    ``O_EXCL`` file is used instead and a lock whose pid no longer runs on this host counts as stale.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "--out") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self.fd: int | None = None
        self.took_over: dict | None = None  # what a stale lock file said, when one was taken over

    def _info(self) -> bytes:
        body = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]]),
        }
        return (json.dumps(body) + "\n").encode("utf-8")

    @staticmethod
    def _parse(raw: bytes) -> dict:
        try:
            info = json.loads(raw.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def _busy(self, info: dict) -> UsageError:
        if info.get("pid"):
            holder = f"pid {info['pid']}"
            if info.get("host") and info["host"] != socket.gethostname():
                holder += f" on {info['host']}"
            if info.get("started"):
                holder += f" since {info['started']}"
            if info.get("command"):
                holder += f": {info['command']}"
        else:
            holder = "a process that is just starting"
        return UsageError(
            f"{self.what} {self.folder}: in use by another automot process ({holder}); wait for it to end or "
            f"choose another folder (lock file {self.path})"
        )

    def acquire(self) -> FolderLock:
        """Take the lock or raise UsageError naming the process that holds it."""
        if self.fd is not None:
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self._acquire_excl()
        for _ in range(20):  # another process may remove / recreate the file between our open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                info = self._parse(os.pread(fd, 65536, 0))
                os.close(fd)
                raise self._busy(info) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the file we locked was released and unlinked meanwhile: lock the current one
                os.close(fd)
                continue
            old = os.pread(fd, 65536, 0)
            if old.strip():
                self.took_over = self._parse(old)
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._info(), 0)
            self.fd = fd
            return self
        raise UsageError(f"{self.what} {self.folder}: could not take the lock file {self.path} (contended)")

    def _acquire_excl(self) -> FolderLock:  # pragma: no cover - Windows fallback
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            except FileExistsError:
                info = self._parse(self.path.read_bytes())
                pid = info.get("pid")
                alive = True
                if isinstance(pid, int) and info.get("host") in (None, socket.gethostname()):
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        alive = False
                    except OSError:
                        pass
                if alive:
                    raise self._busy(info) from None
                self.took_over = info
                self.path.unlink(missing_ok=True)
                continue
            os.write(fd, self._info())
            self.fd = fd
            return self
        raise UsageError(f"{self.what} {self.folder}: could not take the lock file {self.path} (contended)")

    def release(self) -> None:
        """Remove the lock file and drop the lock (safe to call twice)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.path.unlink()
        finally:
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()


@contextlib.contextmanager
def lock_out(folder: str | os.PathLike, what: str = "--out") -> Iterator[FolderLock]:
    """Hold ``folder``'s lock (an existing folder) for the block; UsageError (exit 2) names the holder if busy.

    ::

        with lock_out(out):
            ...  # only this process writes into out
    """
    lock = FolderLock(folder, what).acquire()
    try:
        yield lock
    finally:
        lock.release()
