"""Double-buffered KV publication: pinned reads are never torn, the writer never touches a pinned slot."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from automot.runtime.buffers import DoubleBufferedKV, SnapshotMeta, SnapshotView


def _store(capacity: int = 32) -> DoubleBufferedKV:
    return DoubleBufferedKV(num_layers=3, num_kv_heads=2, capacity=capacity, head_dim=4)


def _fill(slot, v: int) -> None:
    """Write version ``v`` into every buffer, layer by layer, yielding the GIL between pieces.

    The sleeps widen the window in which a reader could observe a half-written slot if publication were wrong.
    """
    for layer in range(slot.keys.shape[0]):
        slot.keys[layer].fill_(float(v))
        time.sleep(0)
        slot.values[layer].fill_(float(v))
    slot.next_position.fill_(v)
    slot.pad_mask[:, : v % slot.capacity + 1] = True
    slot.pad_mask[:, v % slot.capacity + 1 :] = False
    slot.meta = SnapshotMeta(version=0, frame=v, sim_time=v * 0.05)


def _consistency_error(view: SnapshotView) -> str | None:
    """None if every buffer in the view holds the view's own version, else a description of the tear."""
    v = view.meta.version
    checks = {
        "keys.min": view.keys.min().item(),
        "values.max": view.values.max().item(),
        "next_position": view.next_position.item(),
        "frame": view.meta.frame,
    }
    time.sleep(0)  # read the rest after a GIL switch: a concurrent writer would have had a chance to run
    checks.update(
        {
            "keys.max": view.keys.max().item(),
            "values.min": view.values.min().item(),
            "valid": int(view.pad_mask.sum().item()) - 1,
        }
    )
    expected = {name: v for name in checks}
    expected["valid"] = v % view.keys.shape[3]
    bad = {k: val for k, val in checks.items() if val != expected[k]}
    return None if not bad else f"version {v}: {bad}"


def test_concurrent_refresh_and_step_never_tears():
    store = _store()
    writes = 5000
    errors: list[str] = []
    reads = [0, 0]
    done = threading.Event()

    def writer() -> None:
        try:
            for v in range(1, writes + 1):
                with store.write(timeout=10) as slot:
                    _fill(slot, v)
        finally:
            done.set()

    def reader(idx: int) -> None:
        last = 0
        while not done.is_set() or reads[idx] < 100:
            with store.read() as view:
                if view is None:
                    continue
                err = _consistency_error(view)
                if err:
                    errors.append(err)
                if view.meta.version < last:
                    errors.append(f"version went backwards: {last} -> {view.meta.version}")
                last = view.meta.version
                reads[idx] += 1

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert store.version == writes
    assert sum(reads) >= 1000, reads
    # Readers really did overlap with the writer: it had to wait for pinned slots at least once.
    assert store.write_waits > 0


def test_checker_detects_a_torn_slot():
    """Negative control: mutating a pinned slot (what a broken writer would do) is caught by the same check."""
    store = _store()
    with store.write() as slot:
        _fill(slot, 1)
    with store.read() as view:
        assert view is not None and _consistency_error(view) is None
        view.keys[1].fill_(2.0)  # half of a "next version" lands in the pinned slot
        assert "keys.max" in _consistency_error(view)


def test_writer_waits_for_reader_pinning_the_back_slot():
    store = _store()
    with store.write() as slot:
        _fill(slot, 1)
    published = threading.Event()

    def publish(v: int) -> None:
        with store.write(timeout=10) as slot:
            _fill(slot, v)
        published.set()

    with store.read() as old:  # pins slot 0 (version 1)
        publish(2)  # slot 1 is free: no wait
        assert store.version == 2
        published.clear()
        t = threading.Thread(target=publish, args=(3,))
        t.start()
        time.sleep(0.2)
        assert not published.is_set(), "writer reused a slot that a reader still pinned"
        assert store.version == 2
        assert old.keys.min().item() == old.keys.max().item() == 1.0
    t.join(5)
    assert published.is_set() and store.version == 3
    assert store.write_waits == 1


def test_reader_never_waits_for_an_inflight_write():
    store = _store()
    with store.write() as slot:
        _fill(slot, 1)
    inside, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with store.write() as slot:
            inside.set()
            release.wait(5)
            _fill(slot, 2)

    seen = []

    def reader() -> None:
        with store.read() as view:
            seen.append(view.meta.version)

    t = threading.Thread(target=slow_writer)
    t.start()
    assert inside.wait(5)
    r = threading.Thread(target=reader)
    r.start()
    r.join(10)  # the writer is parked until `release`: a reader that waited for it would still be running
    finished_while_writer_parked = not r.is_alive()
    release.set()
    t.join(5)
    r.join(5)
    assert finished_while_writer_parked and seen == [1]
    assert store.version == 2


def test_failed_write_publishes_nothing():
    store = _store()
    with store.write() as slot:
        _fill(slot, 1)
    with pytest.raises(ValueError, match="boom"):
        with store.write() as slot:
            slot.keys.fill_(99.0)
            raise ValueError("boom")
    with pytest.raises(RuntimeError, match="set slot.meta"):
        with store.write() as slot:
            slot.keys.fill_(98.0)
    assert store.version == 1
    with store.read() as view:
        assert view is not None and _consistency_error(view) is None


def test_single_writer_enforced_and_fixed_addresses():
    store = _store()
    ptrs = {s.keys.data_ptr() for s in store.slots}
    seen = set()
    for v in range(1, 11):
        with store.write() as slot:
            _fill(slot, v)
        with store.read() as view:
            seen.add(view.keys.data_ptr())
    assert seen == ptrs  # both preallocated slots used, nothing reallocated
    with store.write() as slot:
        with pytest.raises(RuntimeError, match="single writer"):
            with store.write():
                pass
        _fill(slot, 11)
    assert store.version == 11


def test_slot_load_pads_and_rejects_oversized_prefix():
    store = _store(capacity=8)
    long_k = torch.ones(3, 1, 2, 6, 4)
    short_k = torch.full((3, 1, 2, 3, 4), 2.0)
    slot = store.slots[0]
    assert slot.load(long_k, long_k, torch.ones(1, 6, dtype=torch.bool), torch.tensor([6])) == 6
    assert slot.load(short_k, short_k, torch.ones(1, 3, dtype=torch.bool), torch.tensor([3])) == 3
    assert torch.all(slot.keys[:, :, :, 3:] == 0)  # the longer, older prefix is gone, not merely masked
    assert slot.pad_mask.tolist() == [[True] * 3 + [False] * 5]
    assert slot.next_position.item() == 3
    with pytest.raises(ValueError, match="exceeds the runtime KV capacity 8"):
        slot.load(torch.ones(3, 1, 2, 9, 4), torch.ones(3, 1, 2, 9, 4), torch.ones(1, 9, dtype=torch.bool), long_k)
    with pytest.raises(ValueError, match="layout"):
        slot.load(torch.ones(2, 1, 2, 4, 4), torch.ones(2, 1, 2, 4, 4), torch.ones(1, 4, dtype=torch.bool), long_k)
