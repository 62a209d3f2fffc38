"""Never hang: a slow path that hangs on the first refresh and later, in every mode (issue #12).

The hang is a ``model.prefill`` that blocks on a ``threading.Event`` released in teardown. Budgets are tens of ms.
Whether a tick waited is read from the runtime's counters (``first_snapshot_waits``, ``refresh_timeouts``,
``skipped_refreshes``), never from wall-clock measurements.
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest

from automot.runtime import build_runtime
from automot.runtime.types import DrivingObservation, DrivingState

DT = 0.05
BUDGET = 0.03  # s, the budget of every refresh that hangs on purpose in this file
HEALTHY = 30.0  # s, the budget of a healthy first refresh (its duration depends on the machine)
STATE = DrivingState(np.array([[6.0, 0.5], [15.0, 1.0]], np.float32), 3.0)


def _obs(model, seed: int = 0) -> DrivingObservation:
    rng = np.random.default_rng(seed)
    p = model.config.prompt
    images = [rng.integers(0, 255, (p.image_height, p.image_width, 3), dtype=np.uint8) for _ in range(p.num_frames)]
    return DrivingObservation(images, np.array([[6.0, 0.5], [15.0, 1.0]], np.float32), 3.0)


class HangingPrefill:
    """Wraps model.prefill: calls whose number is in ``hang_calls`` (1-based) block until ``release``."""

    def __init__(self, model, hang_calls: set[int]) -> None:
        self.real = model.prefill
        self.hang_calls = hang_calls
        self.calls = 0
        self.entered = threading.Event()  # set when a hanging call started
        self.release = threading.Event()

    def __call__(self, obs, capacity=None):
        self.calls += 1
        if self.calls in self.hang_calls:
            self.entered.set()
            self.release.wait(60)
        return self.real(obs, capacity=capacity)


@pytest.fixture
def hang(tiny_model, monkeypatch):
    """``hang({1, 3})`` installs a prefill hanging on calls 1 and 3; every hang is released at teardown."""
    made: list[HangingPrefill] = []

    def install(calls: set[int]) -> HangingPrefill:
        gate = HangingPrefill(tiny_model, calls)
        monkeypatch.setattr(tiny_model, "prefill", gate)
        made.append(gate)
        return gate

    yield install
    for gate in made:
        gate.release.set()


def _opts(**extra):
    """Budgets for a run whose first refresh hangs; pass first_snapshot_timeout_s=HEALTHY when it does not."""
    return {"first_snapshot_timeout_s": BUDGET, "refresh_timeout_s": BUDGET, "close_timeout_s": 5.0, **extra}


def _slow_threads() -> list[threading.Thread]:
    names = ("automot-slow-path", "automot-refresh")
    return [t for t in threading.enumerate() if t.name in names and t.is_alive()]


@pytest.mark.parametrize("mode", ["sync", "blocking"])
def test_sync_first_refresh_hangs_ticks_keep_their_budget(tiny_model, hang, mode, tmp_path):
    gate = hang({1})
    log = tmp_path / "steps.jsonl"
    with build_runtime(tiny_model, mode=mode, jsonl_log=str(log), **_opts()) as rt:
        rt.submit(_obs(tiny_model), 0.0, 0)  # waits at most the budget, then returns
        assert gate.entered.is_set() and rt.stats()["refresh_timeouts"] == 1
        out = rt.step(STATE, 0.0, 0)
        assert out.safe_stop and out.extras["stop_kind"] == "no_snapshot"
        assert "refresh of frame 0 still running" in out.safe_stop_reason
        assert "first_snapshot_timeout_s=0.03" in out.refresh_overrun
        for f in range(1, 5):  # every submit is due (no snapshot yet) but one refresh is already running
            rt.submit(_obs(tiny_model, f), f * DT, f)
            assert rt.step(STATE, f * DT, f).safe_stop
        s = rt.stats()
        assert s["refresh_timeouts"] == 1 and s["skipped_refreshes"] == 4  # no tick waited again
        assert gate.calls == 1 and s["refresh_running_s"] is not None
        gate.release.set()
        assert rt.wait_idle(30)
        out = rt.step(STATE, 5 * DT, 5)  # the late refresh was published: frame 0, 5 ticks old, within limits
        assert not out.safe_stop and (out.snapshot_frame, out.age_ticks) == (0, 5) and out.refresh_overrun is None
        assert rt.stats()["late_refreshes"] == 1
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["stop_kind"] for r in rows] == ["no_snapshot"] * 5 + [None]
    assert all("still running" in r["refresh_overrun"] for r in rows[:5]) and rows[5]["refresh_overrun"] is None


def test_sync_later_refresh_hangs_previous_snapshot_then_stale_stop(tiny_model, hang):
    gate = hang({2})  # the refresh of frame 2 hangs
    opts = _opts(first_snapshot_timeout_s=HEALTHY, max_snapshot_age_ticks=4, max_snapshot_age_s=None)
    with build_runtime(tiny_model, mode="sync", **opts) as rt:
        outs = []
        for f in range(8):
            rt.submit(_obs(tiny_model, f), f * DT, f)
            outs.append(rt.step(STATE, f * DT, f))
        s = rt.stats()
        # frame 2 gave up after the budget; frames 4 and 6 were due but skipped without waiting
        assert (s["refresh_timeouts"], s["skipped_refreshes"], gate.calls) == (1, 2, 2)
        assert [o.snapshot_frame for o in outs] == [0] * 8
        assert [o.age_ticks for o in outs] == list(range(8))  # ages are real, not 0
        assert [o.safe_stop for o in outs] == [False] * 5 + [True] * 3  # max_snapshot_age_ticks=4
        assert outs[0].refresh_overrun is None and outs[1].refresh_overrun is None
        for o in outs[2:]:
            assert (
                "refresh of frame 2 still running" in o.refresh_overrun
                and "refresh_timeout_s=0.03" in o.refresh_overrun
            )
        stop = outs[-1]
        assert stop.extras["stop_kind"] == "stale_snapshot"
        assert "max_snapshot_age_ticks=4" in stop.safe_stop_reason and "refresh of frame 2" in stop.safe_stop_reason
        gate.release.set()
        assert rt.wait_idle(30)
        out = rt.step(STATE, 8 * DT, 8)  # frame 2 published late: 6 ticks old, still too old
        assert out.safe_stop and out.snapshot_frame == 2 and out.refresh_overrun is None
        rt.submit(_obs(tiny_model, 8), 8 * DT, 8)  # the cadence resumes
        assert rt.wait_idle(30)  # (a healthy refresh may take longer than BUDGET on a busy machine)
        out = rt.step(STATE, 8 * DT, 8)
        assert not out.safe_stop and (out.snapshot_frame, out.age_ticks) == (8, 0)


def test_async_first_refresh_hang_waits_once_then_stops_at_once(tiny_model, hang):
    gate = hang({1, 3})  # the first refresh and a later one hang
    with build_runtime(tiny_model, mode="async", max_snapshot_age_ticks=3, max_snapshot_age_s=None, **_opts()) as rt:
        rt.submit(_obs(tiny_model), 0.0, 0)
        outs = [rt.step(STATE, f * DT, f) for f in range(5)]
        assert rt.stats()["first_snapshot_waits"] == 1  # waited on the first step only
        assert all(o.safe_stop and o.extras["stop_kind"] == "no_snapshot" for o in outs)
        assert all("refresh of frame 0 still running" in o.safe_stop_reason for o in outs)
        gate.release.set()
        assert rt.wait_idle(30)
        gate.release.clear()
        rt.submit(_obs(tiny_model, 5), 5 * DT, 5)  # call 2: a normal refresh
        assert rt.wait_idle(30)
        rt.submit(_obs(tiny_model, 6), 6 * DT, 6)  # call 3: hangs
        assert gate.entered.wait(30)
        assert _eventually(lambda: rt.refresh_overrun is not None)  # steps never wait: let the budget pass
        outs = [rt.step(STATE, f * DT, f) for f in range(6, 10)]
        assert [o.snapshot_frame for o in outs] == [5] * 4 and [o.age_ticks for o in outs] == [1, 2, 3, 4]
        assert [o.safe_stop for o in outs] == [False, False, False, True]
        assert "stale" in outs[-1].extras["stop_kind"] and "refresh of frame 6" in outs[-1].safe_stop_reason
        assert rt.stats()["first_snapshot_waits"] == 1
        gate.release.set()  # so close() does not wait for it


def test_async_overrun_is_named_while_the_snapshot_is_young(tiny_model, hang):
    gate = hang({2})
    with build_runtime(tiny_model, mode="async", **_opts(first_snapshot_timeout_s=HEALTHY)) as rt:
        rt.submit(_obs(tiny_model), 0.0, 0)
        assert rt.wait_idle(30)
        rt.submit(_obs(tiny_model, 1), DT, 1)
        assert gate.entered.wait(30)
        out = rt.step(STATE, DT, 1)
        assert not out.safe_stop and out.snapshot_frame == 0  # async steps never wait for a running refresh
        assert _eventually(lambda: rt.refresh_overrun is not None)  # until the budget has passed
        out = rt.step(STATE, 2 * DT, 2)
        assert not out.safe_stop and out.snapshot_frame == 0 and "refresh of frame 1" in out.refresh_overrun
        gate.release.set()


def _eventually(predicate, tries: int = 2000) -> bool:
    event = threading.Event()
    for _ in range(tries):
        if predicate():
            return True
        event.wait(0.005)
    return False


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_close_with_a_refresh_that_never_returns(tiny_model, hang, mode, caplog):
    gate = hang({1})
    rt = build_runtime(tiny_model, mode=mode, **_opts(close_timeout_s=BUDGET))
    rt.submit(_obs(tiny_model), 0.0, 0)
    assert gate.entered.wait(30)
    threads = [rt.scheduler.thread]  # this runtime's worker (other tests may leave unclosed runtimes' workers around)
    assert threads[0] in _slow_threads() and threads[0].daemon  # cannot block interpreter exit
    with caplog.at_level(logging.ERROR, logger="automot.runtime.runtime"):
        rt.close()  # bounded by close_timeout_s, reported, not raised
    assert rt.close_problem and "still running" in rt.close_problem and "refresh of frame 0" in rt.close_problem
    assert "still running" in caplog.text
    gate.release.set()  # the refresh returns after close: the thread ends without publishing
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads) and rt.snapshot_version == 0
    rt.close()  # idempotent


def test_late_refresh_never_publishes_an_older_snapshot(tiny_model):
    with build_runtime(tiny_model, mode="sync", **_opts(first_snapshot_timeout_s=HEALTHY)) as rt:
        rt.submit(_obs(tiny_model), 5 * DT, 5)
        rt.core.refresh(_obs(tiny_model, 1), 3 * DT, 3)  # what a refresh of an older frame finishing late would do
        assert rt.snapshot_version == 1 and rt.stats()["discarded_refreshes"] == 1
        assert rt.step(STATE, 5 * DT, 5).snapshot_frame == 5


def test_budget_options_are_validated(tiny_model):
    with pytest.raises(ValueError, match="refresh_timeout_s"):
        build_runtime(tiny_model, mode="sync", refresh_timeout_s=0)
    with build_runtime(tiny_model, mode="sync", refresh_timeout_s=None) as rt:  # no budget: inline, no thread
        assert rt.scheduler.thread is None
        rt.submit(_obs(tiny_model), 0.0, 0)
        assert not rt.step(STATE, 0.0, 0).safe_stop
