"""`automot eval` orchestration on a local Ray instance, CPU only, no CARLA (issue #13).

A stand-in CARLA server (tests/doubles/eval_standins/fake_simulator.py: its own ports, a health probe, crash / hang on
command, a child "binary" like CarlaUE4.sh) and a stand-in leaderboard evaluator (fake_evaluator.py: the real
command line, real leaderboard-format checkpoints, crash / hang / non-zero exit / server crash / killing its worker
on command) drive 12 routes through the real engine. Every process the stand-ins start logs its pid; the tests
check by pid that none is left. One Ray instance is shared by the whole module (Ray starts slowly).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray", reason="the eval extra (pip install -e .[eval]) brings Ray")

from doubles.paths import B2D_ROUTES  # noqa: E402

from automot.cli import main  # noqa: E402
from automot.evaluation import ports as ports_mod  # noqa: E402
from automot.evaluation.records import is_complete, read_route_file, select_subset  # noqa: E402

HERE = Path(__file__).resolve().parent
STANDINS = HERE.parent / "doubles" / "eval_standins"
REPO = HERE.parents[1]
ROUTE_IDS = ["1711", "1773", "1790", "2082", "2084", "2086", "2091", "2120", "2128", "2166", "2204", "2273"]
B2D_XML = B2D_ROUTES / "bench2drive220.xml"  # checked when present ($AUTOMOT_SHARED, doubles.paths)


@pytest.fixture(scope="module")
def ray_address():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Stand-in settings: the pid log, the fault plan, a private port-lock folder."""
    pidlog = tmp_path / "pids.log"
    faults = tmp_path / "faults.json"
    monkeypatch.setenv("AUTOMOT_FAKE_PIDLOG", str(pidlog))
    monkeypatch.setenv("AUTOMOT_FAKE_FAULTS", str(faults))
    monkeypatch.setenv(ports_mod.LOCK_DIR_ENV, str(tmp_path / "ports"))
    return {"pidlog": pidlog, "faults": faults, "tmp": tmp_path}


def write_routes(path: Path) -> Path:
    """A route file with the 12 route ids, each a different length (longest-first order is checkable)."""
    parts = []
    for k, rid in enumerate(ROUTE_IDS):
        pts = "".join(f'<position x="{j * 2.0}" y="0.0" z="0.0"/>' for j in range(3 + 2 * k))
        parts.append(f'<route id="{rid}" town="Town12"><waypoints>{pts}</waypoints></route>')
    path.write_text("<routes>" + "".join(parts) + "</routes>\n", encoding="utf-8")
    return path


def eval_argv(routes: Path, out: Path, *extra: str) -> list[str]:
    py = sys.executable
    sim = f"{py} {STANDINS / 'fake_simulator.py'} -carla-rpc-port={{rpc_port}} -carla-streaming-port={{streaming_port}}"
    return [
        "eval",
        "--world", "carla",
        "--routes", str(routes),
        "--agent-config", str(REPO / "leaderboard_configs" / "demo_tiny.yaml"),
        "--out", str(out),
        "--gpus", "0,1",
        "--probe", "tcp",
        "--simulator-command", sim,
        "--evaluator-command", f"{py} {STANDINS / 'fake_evaluator.py'}",
        "--simulator-start-timeout", "20",
        "--progress-every", "2",
        *extra,
    ]  # fmt: skip


def stray_pids(pidlog: Path, wait: float = 10.0) -> list[str]:
    """Processes the stand-ins logged that are still alive after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        if pidlog.is_file():
            for line in pidlog.read_text().splitlines():
                pid, name = line.split()
                try:
                    os.kill(int(pid), 0)
                    stat = Path(f"/proc/{pid}/stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":
                        alive.append(f"{pid} {name}")
                except (ProcessLookupError, FileNotFoundError):
                    pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.25)


def route_results(out: Path) -> dict[str, list[dict]]:
    """Each route folder's checkpoint records, by folder."""
    found = {}
    for rid in ROUTE_IDS:
        data = json.loads((out / "routes" / rid / "results.json").read_text())
        found[rid] = data["_checkpoint"]["records"]
    return found


def merged_records(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["_checkpoint"]["records"]


def test_cli_layout_and_route_files(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CARLA_ROOT", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    assert exc.value.code == 0
    assert "report DIR" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # an unknown sub-command: eval's own parser, one line
        main(["eval", "frobnicate", "x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("automot eval: error: argument [SUBCOMMAND]: invalid choice")
    assert main(["eval", "report", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"automot eval report: error: DIR {tmp_path / 'none'}: not a folder\n"
    with pytest.raises(SystemExit) as exc:  # one DIR only: the report sub-command's own parser says so
        main(["eval", "report", str(tmp_path), str(tmp_path / "b")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"automot eval report: error: unrecognized arguments: {tmp_path / 'b'}")
    assert len(err.splitlines()) == 1
    # --routes all names the embedded routes: with --world carla the error says which world takes them
    assert main(["eval", "--world", "carla", "--routes", "all", "--out", str(tmp_path / "o")]) == 2
    assert "pass --world embedded" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["eval", "--out", str(tmp_path / "o")]) == 2  # --routes missing
    routes = write_routes(tmp_path / "r.xml")
    # no CARLA server given: exit 3, and nothing written (every check comes before the output folder)
    cfg = str(REPO / "leaderboard_configs" / "demo_tiny.yaml")
    argv = ["eval", "--world", "carla", "--routes", str(routes), "--agent-config", cfg, "--out", str(tmp_path / "o")]
    assert main(argv) == 3 and not (tmp_path / "o").exists()
    parsed = read_route_file(routes)
    assert [r for r, _ in parsed] == ROUTE_IDS
    assert parsed[0][1] == pytest.approx(4.0) and parsed[-1][1] > parsed[0][1]
    assert select_subset(ROUTE_IDS, "1711,2082-2091") == ["1711", "2082", "2084", "2086", "2091"]
    if B2D_XML.is_file():  # the real Bench2Drive route file parses: 220 routes with lengths
        b2d = read_route_file(B2D_XML)
        assert len(b2d) == 220 and all(length > 0 for _, length in b2d)


def test_port_blocks_are_disjoint_across_processes(tmp_path):
    lock_dir = tmp_path / "ports"
    a = ports_mod.claim_block(lock_dir)
    b = ports_mod.claim_block(lock_dir)
    assert not set(a.ports.all()) & set(b.ports.all())
    # another process (a second eval on this node) gets a third block while both are held
    code = (
        "import sys; from automot.evaluation.ports import claim_block; "
        f"b = claim_block({str(lock_dir)!r}); print(b.block, *b.ports.all())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    other = {int(p) for p in out[1:]}
    assert not other & (set(a.ports.all()) | set(b.ports.all()))
    a.release()
    # a port in use by something else is never handed out: a listening socket on the first free block's RPC port
    # -> that block is skipped (a free block found first: other tests on this node may hold ports too)
    import socket

    probe = ports_mod.claim_block(lock_dir)
    busy = probe.ports.rpc
    probe.release()
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", busy))
        except OSError:
            pytest.skip(f"port {busy} was taken by another process meanwhile")
        s.listen(1)
        c = ports_mod.claim_block(lock_dir)
        assert busy not in c.ports.all()
        c.release()
    b.release()


def test_fault_injection_then_killed_driver_and_resume(ray_address, env):
    tmp = env["tmp"]
    routes = write_routes(tmp / "routes.xml")
    common = ("--max-retries", "2", "--route-timeout", "6")
    # The reference: a clean run, where only 2086 always crashes (scored 0 after the retries in every run).
    env["faults"].write_text(json.dumps({"2086": ["crash"]}))
    assert main(eval_argv(routes, tmp / "clean", *common)) == 0
    clean = merged_records(tmp / "clean")

    # Faults that the retries recover from, a killed worker, a crashed and a hung server, a hung evaluator.
    for counter in tmp.glob("faults.json.*.count"):
        counter.unlink()
    plan = {
        "1711": ["crash", "ok"],
        "1773": ["hang", "ok"],
        "1790": ["exit3", "ok"],
        "2082": ["sim-crash", "ok"],
        "2084": ["sim-hang", "ok"],
        "2086": ["crash"],
        "2091": ["kill-worker", "ok"],
    }
    env["faults"].write_text(json.dumps(plan))
    out = tmp / "faulty"
    assert main(eval_argv(routes, out, *common)) == 0
    assert merged_records(out) == clean  # identical merge
    per_route = route_results(out)
    assert all(len(recs) == 1 for recs in per_route.values())  # every route scored exactly once
    assert not list((out / "routes").glob(".staged.*"))
    summaries = {rid: json.loads((out / "routes" / rid / "record.json").read_text()) for rid in ROUTE_IDS}
    for rid in ("1711", "1773", "1790", "2082", "2084"):
        assert summaries[rid]["status"] == "done" and summaries[rid]["attempts"] == 2, summaries[rid]
    assert "hung" in summaries["1773"]["attempt_errors"][0]
    assert "simulation crashed" in summaries["2082"]["attempt_errors"][0]
    bad = summaries["2086"]
    assert bad["status"] == "failed" and bad["score"] == 0.0 and bad["attempts"] == 3
    assert "exited with code 1" in bad["failure_reason"]
    assert per_route["2086"][0]["scores"]["score_composed"] == 0.0
    assert "exited with code 1" in per_route["2086"][0]["meta"]["failure_reason"]
    assert summaries["2091"]["status"] == "done"  # its worker was killed; the route ran again elsewhere
    merged = json.loads((out / "merged.json").read_text())
    assert merged  # the merge helper's Bench2Drive-format file is there and parses
    # the two workers used disjoint ports
    ports = {}
    for s in summaries.values():
        if s.get("worker"):
            ports.setdefault(s["worker"]["slot"], set()).add(s["worker"]["ports"]["rpc"])
    assert len(ports) == 2 and not ports[0] & ports[1]
    assert stray_pids(env["pidlog"]) == []

    # A driver killed mid-run (SIGKILL), then the same command again: only the missing routes run.
    for counter in tmp.glob("faults.json.*.count"):
        counter.unlink()
    env["faults"].write_text(json.dumps({rid: ["slow"] for rid in ROUTE_IDS} | {"2086": ["crash"]}))
    resumed = tmp / "resumed"
    argv = eval_argv(routes, resumed, *common)
    child_env = dict(os.environ, AUTOMOT_FAKE_SLOW="1.0", RAY_ADDRESS=ray_address)  # the shared Ray instance
    driver = subprocess.Popen(
        [sys.executable, "-m", "automot.cli", *argv], env=child_env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 90
    while sum(is_complete(resumed, r) for r in ROUTE_IDS) < 3 and time.monotonic() < deadline:
        assert driver.poll() is None, driver.stderr.read()
        time.sleep(0.2)
    driver.kill()
    driver.wait()
    done_before = [r for r in ROUTE_IDS if is_complete(resumed, r)]
    assert 3 <= len(done_before) < len(ROUTE_IDS)
    assert stray_pids(env["pidlog"], wait=20.0) == []  # Ray ends the dead driver's workers and their servers
    os.environ["AUTOMOT_FAKE_SLOW"] = "0"
    try:
        assert main(eval_argv(routes, resumed, *common, "--resume")) == 0
    finally:
        del os.environ["AUTOMOT_FAKE_SLOW"]
    assert merged_records(resumed) == clean
    assert all(len(recs) == 1 for recs in route_results(resumed).values())
    for rid in set(done_before) - {"2086"}:  # routes recorded before the kill were not run again
        assert (tmp / f"faults.json.{rid}.count").stat().st_size == 1
    assert stray_pids(env["pidlog"]) == []


def test_two_evals_at_once_use_disjoint_ports(ray_address, env):
    tmp = env["tmp"]
    routes = write_routes(tmp / "routes.xml")
    env["faults"].write_text(json.dumps({rid: ["slow"] for rid in ROUTE_IDS}))
    child_env = dict(os.environ, AUTOMOT_FAKE_SLOW="0.5", RAY_ADDRESS=ray_address)
    procs = []
    for name, subset in (("a", "1711,1773,1790"), ("b", "2082,2084,2086")):
        argv = eval_argv(routes, tmp / name, "--routes-subset", subset)
        procs.append(subprocess.Popen([sys.executable, "-m", "automot.cli", *argv], env=child_env))
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    used = {}
    for name, ids in (("a", ROUTE_IDS[:3]), ("b", ROUTE_IDS[3:6])):
        used[name] = set()
        for rid in ids:
            worker = json.loads((tmp / name / "routes" / rid / "record.json").read_text())["worker"]
            used[name] |= set(worker["ports"].values())
    assert used["a"] and used["b"] and not used["a"] & used["b"]
    assert stray_pids(env["pidlog"]) == []


def test_embedded_world_through_ray(ray_address, tmp_path):
    out = tmp_path / "emb"
    argv = ["eval", "--world", "embedded", "--routes", "highway_lane_keep,merge", "--seeds", "0-1"]
    # --set is validated before anything is written: a bad key exits 2 and leaves no folder
    assert main([*argv, "--ticks", "3", "--out", str(out), "--set", "runtime.latency_tick=1"]) == 2
    assert not out.exists()
    argv += ["--set", "runtime.latency_ticks=1", "--set", "runtime.refresh_every=3"]
    model = tmp_path / "my_model"  # --checkpoint: the model folder every route drives with
    shutil.copytree(REPO / "checkpoints" / "tiny_demo", model)
    argv += ["--checkpoint", str(model)]
    assert main([*argv, "--ticks", "3", "--out", str(out), "--progress-every", "5"]) == 0
    merged_cfg = yaml.safe_load((out / "agent_config.yaml").read_text())
    assert merged_cfg["runtime"]["latency_ticks"] == 1 and merged_cfg["runtime"]["refresh_every"] == 3
    assert Path(merged_cfg["model"]["checkpoint"]) == model.resolve()
    ids = [f"{r}_seed{s}" for r in ("highway_lane_keep", "merge") for s in (0, 1)]
    for rid in ids:
        rec = json.loads((out / "routes" / rid / "record.json").read_text())
        assert rec["status"] == "done" and rec["seed"] == int(rid[-1])
        assert json.loads((out / "routes" / rid / "results.json").read_text())["_checkpoint"]["records"]
    results = json.loads((out / "results.json").read_text())
    assert len(results["_checkpoint"]["records"]) == 4
    json.loads((out / "merged.json").read_text())
    assert (out / "report.md").read_text().strip()
    assert "<html" in (out / "report.html").read_text().lower()
    # `automot eval report DIR` recomputes from what is in DIR
    (out / "report.md").unlink()
    assert main(["eval", "report", str(out)]) == 0
    assert (out / "report.md").is_file()


def test_simulator_command_lines_and_own_group_cleanup(tmp_path):
    from automot.evaluation.simulator import Simulator, SimulatorFailed, SimulatorSpec, simulator_command

    p = ports_mod.ports_of_block(3)
    cmd = simulator_command(SimulatorSpec(carla_root="/opt/carla"), p, "2")
    assert cmd[0] == "/opt/carla/CarlaUE4.sh" and "-RenderOffScreen" in cmd and "-nosound" in cmd
    assert f"-carla-rpc-port={p.rpc}" in cmd and f"-carla-streaming-port={p.streaming}" in cmd
    assert "-graphicsadapter=2" in cmd
    docker = simulator_command(SimulatorSpec(image="carlasim/carla:0.9.15"), p, "1")
    assert docker[:2] == ["docker", "run"] and "carlasim/carla:0.9.15" in docker and "--gpus=device=1" in docker
    assert "./CarlaUE4.sh" in docker and f"-carla-rpc-port={p.rpc}" in docker
    # a server that never answers: stopped (its whole group) after the start timeout, the probe is injectable
    spec = SimulatorSpec(command=["sh", "-c", "sleep 60 & sleep 60; echo -carla-rpc-port={rpc_port}"], start_timeout=1)
    sim = Simulator(spec, p, None, tmp_path / "sim.log", probe=lambda host, port, timeout: False)
    with pytest.raises(SimulatorFailed, match="did not answer"):
        sim.start()
    assert sim.proc is None
    # the Bench2Drive fork's own server on our port (its own session) is found by port and ended, nothing else
    other = subprocess.Popen(["sh", "-c", f"sleep 60; echo -carla-rpc-port={p.rpc}1"], start_new_session=True)
    ours = subprocess.Popen(["sh", "-c", f"sleep 60; echo -carla-rpc-port={p.rpc}"], start_new_session=True)
    time.sleep(0.3)
    assert ports_mod.kill_servers_on_port(p.rpc) == [ours.pid]
    assert ours.wait(5) == -9 and other.poll() is None
    other.kill()
    other.wait()


def test_routes_are_scheduled_longest_first(tmp_path):
    from automot.evaluation.records import Job, longest_first

    xml = tmp_path / "r.xml"
    # lengths by hand: A 3-4-5 triangle leg = 5 m; B 10 m + 10 m = 20 m; C 0 m (one point); D 20 m (tie with B)
    xml.write_text(
        "<routes>"
        '<route id="A"><waypoints><position x="0" y="0" z="0"/><position x="3" y="4" z="0"/></waypoints></route>'
        '<route id="B"><waypoints><position x="0" y="0" z="0"/><position x="10" y="0" z="0"/>'
        '<position x="10" y="10" z="0"/></waypoints></route>'
        '<route id="C"><waypoints><position x="5" y="5" z="0"/></waypoints></route>'
        '<route id="D"><waypoints><position x="0" y="0" z="0"/><position x="0" y="20" z="0"/></waypoints></route>'
        "</routes>"
    )
    parsed = dict(read_route_file(xml))
    assert parsed == pytest.approx({"A": 5.0, "B": 20.0, "C": 0.0, "D": 20.0})
    jobs = [Job(job_id=rid, route_id=rid, length=length) for rid, length in parsed.items()]
    assert [j.job_id for j in longest_first(jobs)] == ["B", "D", "A", "C"]
