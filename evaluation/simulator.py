"""One simulator server owned by one eval worker: start, wait until it answers, health-check, stop, restart.

The server runs in its own process group (``start_new_session``), so stopping it kills that group and nothing
else: never another worker's CARLA (the Bench2Drive fork's ``ps | grep -graphicsadapter | kill -9`` kills every
CARLA on the node). The direct child also gets ``PR_SET_PDEATHSIG`` so it dies with its worker; the group id is
recorded in the worker's port-block lock file (:mod:`automot.evaluation.ports`) for the next holder to reap what a
SIGKILLed worker left.

Command lines (:func:`simulator_command`): ``CarlaUE4.sh -RenderOffScreen -nosound -carla-rpc-port=P
-carla-streaming-port=S -carla-secondary-port=S2 -graphicsadapter=G`` under ``--carla-root``; ``docker run ...
carlasim/carla:0.9.15 ./CarlaUE4.sh ...`` for ``--carla-image``; or a template (tests: the stand-in server) with
``{rpc_port} {streaming_port} {secondary_port} {tm_port} {gpu}`` placeholders.

Readiness / health probes: ``carla`` (``carla.Client(host, port).get_server_version()``) or ``tcp`` (the stand-in's
line protocol: send ``version``, read one line back). Both are injectable for tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from automot.evaluation.ports import Ports, kill_group

Probe = Callable[[str, int, float], bool]


def carla_probe(host: str, port: int, timeout: float) -> bool:
    """The server answers ``get_server_version()`` within ``timeout`` seconds."""
    try:
        import carla  # noqa: PLC0415 - optional extra
    except ImportError:
        return False
    try:
        client = carla.Client(host, port)
        client.set_timeout(timeout)
        return bool(client.get_server_version())
    except Exception:  # noqa: BLE001 - any RPC failure means "not answering"
        return False


def tcp_probe(host: str, port: int, timeout: float) -> bool:
    """The stand-in server's probe: connect, send ``version``, one non-empty line comes back."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"version\n")
            return bool(s.makefile("rb").readline().strip())
    except OSError:
        return False


PROBES: dict[str, Probe] = {"carla": carla_probe, "tcp": tcp_probe}


@dataclass
class SimulatorSpec:
    """How to start the server: exactly one of ``carla_root``, ``image`` or ``command`` (a template)."""

    carla_root: str | None = None
    image: str | None = None
    command: list[str] | None = None
    probe: str = "carla"
    host: str = "127.0.0.1"
    start_timeout: float = 120.0
    probe_timeout: float = 5.0
    extra_args: list[str] = field(default_factory=list)


def simulator_command(spec: SimulatorSpec, ports: Ports, gpu: str | None, name: str = "") -> list[str]:
    """The server's command line for these ports and GPU (``gpu`` None: the first one)."""
    adapter = gpu if gpu not in (None, "") else "0"
    carla_args = [
        "-RenderOffScreen",
        "-nosound",
        f"-carla-rpc-port={ports.rpc}",
        f"-carla-streaming-port={ports.streaming}",
        f"-carla-secondary-port={ports.secondary}",
        f"-graphicsadapter={adapter}",
        *spec.extra_args,
    ]
    if spec.command:
        values = {
            "rpc_port": ports.rpc,
            "streaming_port": ports.streaming,
            "secondary_port": ports.secondary,
            "tm_port": ports.tm,
            "gpu": adapter,
        }
        return [part.format(**values) for part in spec.command]
    if spec.image:
        # The container shares the host network so the ports above are the host's; one GPU by device id.
        return [
            "docker", "run", "--rm", "--name", name or f"automot-carla-{ports.rpc}", "--net=host",
            f"--gpus=device={adapter}", "--privileged", spec.image, "./CarlaUE4.sh", *carla_args[:-1],
        ]  # fmt: skip
    if spec.carla_root:
        return [str(Path(spec.carla_root) / "CarlaUE4.sh"), *carla_args]
    raise ValueError("SimulatorSpec needs carla_root, image or command")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def popen_group(cmd: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: str | None = None):
    """Start ``cmd`` in a new process group (session), stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if os.name == "posix" else None,  # noqa: PLW1509
        )
    finally:
        log.close()


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group of ``proc`` (its own session), SIGKILL it after ``grace`` s, reap ``proc``."""
    pgid = proc.pid  # start_new_session: the group id is the child's pid
    if proc.poll() is None:
        kill_group(pgid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    kill_group(pgid, signal.SIGKILL)  # whatever is left in the group (e.g. the binary CarlaUE4.sh started)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)


class SimulatorFailed(RuntimeError):
    """The server did not come up (exited, or no answer before the start timeout)."""


class Simulator:
    """A server process group on ``ports`` and ``gpu``; ``on_group(pgid | None)`` is told each start / stop."""

    def __init__(
        self,
        spec: SimulatorSpec,
        ports: Ports,
        gpu: str | None,
        log_path: Path,
        probe: Probe | None = None,
        on_group: Callable[[int | None], None] | None = None,
    ) -> None:
        self.spec, self.ports, self.gpu, self.log_path = spec, ports, gpu, log_path
        self.probe = probe or PROBES[spec.probe]
        self.on_group = on_group
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.stop()
        env = dict(os.environ)
        if self.gpu not in (None, ""):
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
        cmd = simulator_command(self.spec, self.ports, self.gpu)
        self.starts += 1
        self.proc = popen_group(cmd, self.log_path, env=env)
        if self.on_group is not None:
            self.on_group(self.proc.pid)
        deadline = time.monotonic() + self.spec.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise SimulatorFailed(f"simulator exited with code {code} while starting (log: {self.log_path})")
            if self.probe(self.spec.host, self.ports.rpc, self.spec.probe_timeout):
                return
            time.sleep(0.2)
        self.stop()
        raise SimulatorFailed(f"simulator did not answer within {self.spec.start_timeout:.0f} s (log: {self.log_path})")

    def healthy(self) -> bool:
        return (
            self.proc is not None
            and self.proc.poll() is None
            and self.probe(self.spec.host, self.ports.rpc, self.spec.probe_timeout)
        )

    def ensure(self) -> bool:
        """Start the server if it is not running and answering; True when it had to (re)start."""
        if self.healthy():
            return False
        self.start()
        return True

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_group(self.proc)
        if self.spec.image:  # the container outlives `docker run` when the client is killed
            subprocess.run(["docker", "rm", "-f", f"automot-carla-{self.ports.rpc}"], capture_output=True, check=False)
        self.proc = None
        if self.on_group is not None:
            self.on_group(None)
