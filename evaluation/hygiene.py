"""Simulator hygiene before an evaluation: the CARLA client and server versions must match.

A 0.9.16 client against Bench2Drive's 0.9.15 server connects and drives, but scores differ (LEAD's advice: do not
evaluate on 0.9.16), so :func:`check_versions` starts one server on a free port block before the first route,
compares ``get_client_version()`` with ``get_server_version()`` and stops the run with one line naming both
(:class:`~automot.errors.EnvironmentProblem`, exit 3) unless the mismatch is allowed. With the ``tcp`` probe (the
stand-in server of the tests) the server's version is the line it answers to ``version``.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from automot.errors import EnvironmentProblem

_VERSION = re.compile(r"\d+\.\d+\.\d+")

__all__ = ["check_versions", "client_version", "same_release"]


def client_version() -> str | None:
    """The installed CARLA client's version (``carla.Client.get_client_version``; None without the package)."""
    try:
        import carla  # noqa: PLC0415 - optional extra
    except ImportError:
        return None
    try:
        return str(carla.Client("127.0.0.1", 1).get_client_version())
    except Exception:  # noqa: BLE001 - an old / odd client: its package metadata then
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("carla")
        except PackageNotFoundError:
            return None


def server_version(probe: str, host: str, port: int, timeout: float = 10.0) -> str | None:
    if probe == "tcp":
        try:
            with socket.create_connection((host, port), timeout=timeout) as s:
                s.settimeout(timeout)
                s.sendall(b"version\n")
                return s.makefile("rb").readline().decode(errors="replace").strip() or None
        except OSError:
            return None
    import carla  # noqa: PLC0415 - checked by the CLI before (exit 3 when missing)

    client = carla.Client(host, port)
    client.set_timeout(timeout)
    return str(client.get_server_version())


def same_release(a: str, b: str) -> bool:
    """Equal major.minor.patch (``0.9.15`` and ``0.9.15-standin`` match; ``0.9.15`` and ``0.9.16`` do not)."""
    ma, mb = _VERSION.search(a), _VERSION.search(b)
    return (ma.group(0) == mb.group(0)) if ma and mb else a.strip() == b.strip()


def check_versions(spec, out: Path, client: str | None, allow: bool) -> tuple[str | None, str | None]:
    """Start one server (``spec``: the run's SimulatorSpec) on a free port block, read its version, stop it; raise
    EnvironmentProblem on a client / server mismatch unless ``allow``. Returns (client, server)."""
    from automot.evaluation.ports import claim_block
    from automot.evaluation.simulator import Simulator, SimulatorFailed

    if client is None:
        return None, None  # no client to compare (the CLI already refused a missing carla package for probe carla)
    block = claim_block()
    sim = Simulator(spec, block.ports, None, Path(out) / ".eval" / "simulators" / "version-check.log")
    try:
        try:
            sim.start()
        except SimulatorFailed as exc:
            raise EnvironmentProblem(f"the CARLA server did not start for the version check: {exc}") from None
        server = server_version(spec.probe, spec.host, block.ports.rpc)
    finally:
        sim.stop()
        block.release()
    if server is None:
        raise EnvironmentProblem("the CARLA server did not report its version (get_server_version)")
    if not same_release(client, server) and not allow:
        raise EnvironmentProblem(
            f"CARLA client {client} and server {server} differ (scores are not comparable across versions); "
            "install the matching client or pass --allow-version-mismatch"
        )
    return client, server
