"""`automot eval` (embedded world): a broken agent setup is refused before any route, a route whose record cannot be
read runs again, a hung route is killed by --route-timeout and recorded failed, and SIGTERM exits 130 with one
automot line (issue 20, cases 4, 5, 9 and 14)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from doubles.paths import REPO

from automot.cli import main

DEMO_CONFIG = REPO / "leaderboard_configs" / "demo_tiny.yaml"
ROUTE = "highway_lane_keep"

HANGING_AGENT = '''
import time

from automot.world.expert_agent import ExpertAgent


def get_entry_point():
    return "HangingAgent"


class HangingAgent(ExpertAgent):
    """The expert, until it stops answering at its 31st step (a hung model, a deadlock)."""

    steps = 0

    def run_step(self, input_data, timestamp):
        HangingAgent.steps += 1
        if HangingAgent.steps > 30:
            time.sleep(3600)
        return super().run_step(input_data, timestamp)
'''


def _eval(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`automot eval` in its own process (its own Ray): a hang fails the test instead of stopping the suite."""
    cmd = [sys.executable, "-m", "automot.cli", "eval", "--world", "embedded", "--routes", ROUTE, "--workers", "1"]
    try:
        return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"automot eval did not end within {timeout} s: {exc.stderr}")


def _bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.yaml"
    if kind == "invalid-yaml":
        path.write_text("model: [unclosed\n")
    elif kind == "missing-checkpoint":
        cfg = yaml.safe_load(DEMO_CONFIG.read_text())
        cfg["model"]["checkpoint"] = str(tmp_path / "no_such_checkpoint")
        path.write_text(yaml.safe_dump(cfg))
    return path  # "missing-file": never written


@pytest.mark.parametrize("kind", ["missing-file", "invalid-yaml", "missing-checkpoint"])
def test_broken_agent_setup_is_refused_before_any_route(tmp_path, capsys, kind):
    out = tmp_path / "eval"
    argv = ["eval", "--world", "embedded", "--routes", ROUTE, "--agent-config", str(_bad(tmp_path, kind))]
    assert main([*argv, "--out", str(out), "--ticks", "3"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("automot eval: error: "), err
    assert not out.exists()


def test_unreadable_route_record_is_run_again(tmp_path):
    out = tmp_path / "eval"
    done = _eval("--out", str(out), "--ticks", "3", "--agent", str(REPO / "world" / "expert_agent.py"))
    assert done.returncode == 0, done.stderr
    job = f"{ROUTE}_seed0"
    results = out / "routes" / job / "results.json"
    assert json.loads(results.read_text())["_checkpoint"]["records"]
    results.write_bytes(bytes(range(256)) * 4)  # the record.json stays valid
    again = _eval("--out", str(out), "--ticks", "3", "--agent", str(REPO / "world" / "expert_agent.py"))
    assert again.returncode == 0, again.stderr
    assert f"route {job}: its record cannot be read" in again.stderr and "running it again" in again.stderr
    assert json.loads(results.read_text())["_checkpoint"]["records"]  # recorded anew
    assert [p.name for p in (out / "routes").iterdir() if p.name.startswith(".unreadable.")] == [f".unreadable.{job}.0"]


def test_route_timeout_kills_a_hung_embedded_route(tmp_path):
    agent = tmp_path / "hanging_agent.py"
    agent.write_text(HANGING_AGENT)
    out = tmp_path / "eval"
    t0 = time.monotonic()
    done = _eval(
        "--out", str(out), "--agent", str(agent), "--ticks", "200", "--route-timeout", "15", "--max-retries", "1"
    )
    assert done.returncode == 0, done.stderr  # every route has a record: the failed one is listed, scored 0
    assert time.monotonic() - t0 < 200
    record = json.loads((out / "routes" / f"{ROUTE}_seed0" / "record.json").read_text())
    assert record["status"] == "failed"
    assert "killed by the watchdog after 15 s" in record["failure_reason"]
    assert record["attempts"] == 2  # --max-retries 1: tried twice
    assert done.stderr.count(f"eval: route {ROUTE}_seed0: route hung: killed by the watchdog") == 2  # each attempt


def test_sigterm_exits_130_with_one_automot_line(tmp_path):
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "automot.cli", "eval", "--world", "embedded", "--routes", ROUTE, "--workers", "1"]
    cmd += ["--out", str(out), "--agent", str(REPO / "world" / "expert_agent.py"), "--progress-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("routes/.staged.*")):
            time.sleep(0.5)  # a route is running
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("automot eval:")]
    assert len(lines) == 1 and "interrupted" in lines[0], err
