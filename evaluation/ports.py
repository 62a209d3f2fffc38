"""Per-node port blocks for simulators: no two workers (of one eval or of two evals on one node) share a port.

A worker claims block ``k`` by holding an exclusive ``flock`` on ``<lock_dir>/block-<k>.lock`` for its lifetime
(the kernel drops the lock when the process dies, so a killed worker never leaves a stale claim), then checks by
binding that every port of the block is free (a port used by something that is not an eval is skipped over).
Block ``k`` is ``BASE + k * STRIDE``: RPC port, streaming port (RPC + 1), CARLA's secondary port (RPC + 2) and the
traffic-manager port (RPC + 3). The lock file also records the simulator process group the holder started, so
the next holder of a block can end a simulator whose worker was killed (:func:`reap_recorded_group`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from automot.errors import EnvironmentProblem

BASE_PORT = 20000
STRIDE = 10
MAX_BLOCKS = 400  # ports 20000 .. 23999
LOCK_DIR_ENV = "AUTOMOT_EVAL_PORT_DIR"


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "automot-eval-ports")


@dataclass(frozen=True)
class Ports:
    rpc: int
    streaming: int
    secondary: int
    tm: int

    def all(self) -> tuple[int, ...]:
        return (self.rpc, self.streaming, self.secondary, self.tm)


def ports_of_block(block: int, base: int = BASE_PORT) -> Ports:
    rpc = base + block * STRIDE
    return Ports(rpc=rpc, streaming=rpc + 1, secondary=rpc + 2, tm=rpc + 3)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a TCP socket can bind ``port``. SO_REUSEADDR as the servers set it: connections in TIME_WAIT
    do not make a port busy, a listening socket does (Linux refuses that bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortBlock:
    """A claimed block of ports, held until :meth:`release` (or the process's death)."""

    def __init__(self, block: int, ports: Ports, fd: int, path: Path) -> None:
        self.block, self.ports, self._fd, self.path = block, ports, fd, path

    def record_group(self, pgid: int | None) -> None:
        """Write the simulator process group this block's holder started (None: none running)."""
        data = json.dumps({"pid": os.getpid(), "pgid": pgid, **asdict(self.ports)}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # drops the flock
            self._fd = -1

    def __enter__(self) -> PortBlock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def group_matches(pgid: int, needle: str) -> bool:
    """True when process group ``pgid`` is still the one we started: its leader's command line mentions ``needle``
    (e.g. its RPC port), or the leader is gone (Linux never hands out a pid that is still a live group's id, so
    a group without its leader cannot be somebody else's)."""
    try:
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return needle in cmdline


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def reap_recorded_group(raw: bytes) -> int | None:
    """End the simulator group a dead holder recorded in its lock file, if it is still that simulator."""
    try:
        info = json.loads(raw.decode() or "{}")
    except ValueError:
        return None
    pgid = info.get("pgid")
    if isinstance(pgid, int) and pgid > 1 and group_matches(pgid, str(info.get("rpc", ""))):
        kill_group(pgid)
        return pgid
    return None


def claim_block(lock_dir: str | os.PathLike | None = None, base: int = BASE_PORT, host: str = "127.0.0.1") -> PortBlock:
    """Claim the first block whose lock is free and whose ports all bind; EnvironmentProblem when none is."""
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for block in range(MAX_BLOCKS):
        path = folder / f"block-{block}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                continue
            raise
        raw = os.pread(fd, 4096, 0)
        if raw:
            reap_recorded_group(raw)  # a simulator left by a killed worker that held this block
        ports = ports_of_block(block, base)
        if all(port_is_free(p, host) for p in ports.all()):
            claimed = PortBlock(block, ports, fd, path)
            claimed.record_group(None)
            return claimed
        os.close(fd)
    raise EnvironmentProblem(f"no free simulator port block in {base}..{base + MAX_BLOCKS * STRIDE} ({folder})")


def server_groups_on_port(rpc: int) -> list[int]:
    """Process groups of the processes whose command line holds ``-carla-rpc-port=<rpc>`` (a server on our
    block's port is ours: the block is locked by this worker). Never this process's own group."""
    import re

    pattern = re.compile(rb"-carla-rpc-port=%d(?!\d)" % rpc)
    groups = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if pattern.search((entry / "cmdline").read_bytes()):
                groups.add(os.getpgid(int(entry.name)))
        except (OSError, ProcessLookupError):
            continue
    groups.discard(os.getpgrp())
    return sorted(groups)


def kill_servers_on_port(rpc: int) -> list[int]:
    """SIGKILL the server process groups on our RPC port (what the Bench2Drive fork started and left)."""
    killed = [g for g in server_groups_on_port(rpc) if kill_group(g)]
    return killed
