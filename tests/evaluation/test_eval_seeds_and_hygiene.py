"""`automot eval --world carla` with seeds and simulator hygiene, on the stand-in server and evaluator
(tests/doubles/eval_standins, as test_ray_orchestration.py) and a local Ray instance (issue 21.0, 21.1, 21.6):

* 3 routes x 2 seeds are 6 jobs, each with its seed on the evaluator's command line (--traffic-manager-seed, the
  argument of leaderboard-2.0 and Bench2Drive's leaderboard_evaluator.py), folders routes/<id>_seed<k>/; a killed
  worker's job is run again; a resume runs only what is missing; more seeds add only the new jobs; another config
  into the folder is refused; each seed gets its official results.json / merged.json, summary.json the over-seed
  figures; the run ends with DS / SR and their intervals and the report's path;
* a CARLA client / server version mismatch stops the run before any route (exit 3, one line naming both);
* --restart-server-every 1 starts one server per route, 0 only one (counted by the stand-in's logged pids).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the eval extra (pip install -e .[eval]) brings Ray")

from automot.cli import main  # noqa: E402
from automot.evaluation import ports as ports_mod  # noqa: E402

HERE = Path(__file__).resolve().parent
STANDINS = HERE.parent / "doubles" / "eval_standins"
REPO = HERE.parents[1]
ROUTES = ["301", "302", "303"]


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOMOT_FAKE_PIDLOG", str(tmp_path / "pids.log"))
    monkeypatch.setenv("AUTOMOT_FAKE_FAULTS", str(tmp_path / "faults.json"))
    monkeypatch.setenv("AUTOMOT_FAKE_ARGVLOG", str(tmp_path / "argv.log"))
    monkeypatch.setenv(ports_mod.LOCK_DIR_ENV, str(tmp_path / "ports"))
    xml = tmp_path / "routes.xml"
    parts = [
        f'<route id="{rid}" town="Town12"><waypoints><position x="0" y="0" z="0"/><position x="{50 * (k + 1)}" '
        f'y="0" z="0"/></waypoints><scenarios><scenario name="s" type="ParkedObstacle"/></scenarios></route>'
        for k, rid in enumerate(ROUTES)
    ]
    xml.write_text("<routes>" + "".join(parts) + "</routes>\n")
    return tmp_path, xml


def argv(xml: Path, out: Path, *extra: str, gpus: str = "0,1") -> list[str]:
    py = sys.executable
    sim = f"{py} {STANDINS / 'fake_simulator.py'} -carla-rpc-port={{rpc_port}} -carla-streaming-port={{streaming_port}}"
    return [
        "eval", "--world", "carla", "--routes", str(xml),
        "--agent-config", str(REPO / "leaderboard_configs" / "demo_tiny.yaml"),
        "--out", str(out), "--gpus", gpus, "--probe", "tcp", "--simulator-command", sim,
        "--evaluator-command", f"{py} {STANDINS / 'fake_evaluator.py'}",
        "--simulator-start-timeout", "20", "--progress-every", "2", "--max-retries", "2", "--route-timeout", "20",
        *extra,
    ]  # fmt: skip


def evaluator_calls(tmp: Path) -> list[tuple[str, int | None]]:
    calls = []
    log = tmp / "argv.log"
    for line in log.read_text().splitlines() if log.is_file() else []:
        args = json.loads(line)
        seed = args[args.index("--traffic-manager-seed") + 1] if "--traffic-manager-seed" in args else None
        calls.append((args[args.index("--routes-subset") + 1], None if seed is None else int(seed)))
    return calls


def test_seeds_are_jobs_with_the_evaluator_seed_killed_worker_resume_and_extension(env, capsys):
    tmp, xml = env
    out = tmp / "eval"
    # the job (302, seed 1) kills its worker on the first attempt (the worker is replaced, the job runs again)
    (tmp / "faults.json").write_text(json.dumps({"302_seed1": ["kill-worker", "ok"]}))
    assert main(argv(xml, out, "--seeds", "0-1", "--carla-client-version", "0.9.15")) == 0
    jobs = {(r, s) for r in ROUTES for s in (0, 1)}
    calls = evaluator_calls(tmp)
    assert set(calls) == jobs and len(calls) == 7  # 6 jobs, one of them twice (the killed worker)
    assert calls.count(("302", 1)) == 2
    for rid, seed in jobs:
        rec = json.loads((out / "routes" / f"{rid}_seed{seed}" / "record.json").read_text())
        assert rec["status"] == "done" and rec["seed"] == seed and rec["config_sha256"]
    printed = capsys.readouterr().out
    assert "routes recorded" in printed and f"report: {out / 'report.html'}" in printed
    assert "DS " in printed and "[" in printed  # DS with its interval
    # per seed: the official formats, 3 records each
    for seed in (0, 1):
        merged = json.loads((out / "seeds" / f"seed{seed}" / "merged.json").read_text())
        results = json.loads((out / "seeds" / f"seed{seed}" / "results.json").read_text())
        assert merged["eval num"] == 3 and "driving score" in merged and "success rate" in merged
        assert sorted(r["route_id"] for r in results["_checkpoint"]["records"]) == [
            f"RouteScenario_{r}_rep0" for r in ROUTES
        ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "finished" and set(summary["over_seeds"]["per_seed"]) == {"0", "1"}
    assert summary["over_seeds"]["DS"]["ci95"] is not None

    # resume: a job whose folder is gone runs again, nothing else does
    import shutil

    shutil.rmtree(out / "routes" / "301_seed0")
    n = len(evaluator_calls(tmp))
    assert main(argv(xml, out, "--seeds", "0-1", "--resume")) == 0
    assert evaluator_calls(tmp)[n:] == [("301", 0)]

    # one more seed, same configuration: only the 3 new jobs run; the merge covers all 9
    n = len(evaluator_calls(tmp))
    assert main(argv(xml, out, "--seeds", "0-2")) == 0
    assert sorted(evaluator_calls(tmp)[n:]) == [(r, 2) for r in ROUTES]
    assert len(json.loads((out / "merged.json").read_text())["route_ids"]) == 9

    # another configuration into the same folder: refused, one line naming the key, nothing run
    n = len(evaluator_calls(tmp))
    capsys.readouterr()
    assert main(argv(xml, out, "--seeds", "0-2", "--set", "model.refiner=true")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "model.refiner (false -> true)" in err
    assert len(evaluator_calls(tmp)) == n


def test_version_mismatch_is_refused_before_any_route(env, capsys):
    tmp, xml = env
    out = tmp / "eval"
    assert main(argv(xml, out, "--carla-client-version", "0.9.16")) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "CARLA client 0.9.16 and server 0.9.15-standin differ" in err and "--allow-version-mismatch" in err
    assert evaluator_calls(tmp) == []  # refused before the first route
    assert not (out / "routes").is_dir() or not [p for p in (out / "routes").iterdir() if not p.name.startswith(".")]
    assert main(argv(xml, out, "--carla-client-version", "0.9.16", "--allow-version-mismatch")) == 0
    assert len(evaluator_calls(tmp)) == 3


@pytest.mark.parametrize(("every", "servers"), [("1", 3), ("0", 1)])
def test_restart_server_every(env, every, servers):
    tmp, xml = env
    out = tmp / "eval"
    seen: list[tuple[str, int, bool]] = []  # the live files as a reader sees them while the routes run
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                state = json.loads((out / "summary.json").read_text())
                live = "running: " in (out / "report.md").read_text()
                seen.append((state["state"], state["done"], live))
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        assert main(argv(xml, out, "--restart-server-every", every, gpus="0")) == 0
    finally:
        stop.set()
        reader.join()
    # between two routes the live summary and report said "running" with 1 or 2 of the 3 routes done
    assert any(state == "running" and 0 < done < 3 and live for state, done, live in seen), seen[-5:]
    assert json.loads((out / "summary.json").read_text())["state"] == "finished"
    # the stand-in's launcher and its "binary" each log their pid: two lines per server started
    pids = [line.split()[0] for line in (tmp / "pids.log").read_text().splitlines() if line.endswith("simulator")]
    assert len(set(pids)) == 2 * servers
