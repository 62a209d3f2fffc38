"""Double-buffered, fixed-capacity KV snapshot publication between the slow and the fast path.

Two slots of identical shape are allocated once. The writer (slow path) fills the *back* slot and then swaps the
front index under a lock; readers (fast path) pin the *front* slot for the duration of one fast step. The writer
never touches a slot that a reader has pinned: before reusing a slot it waits until that slot's reader count
drops to zero. A reader therefore always sees the complete contents of exactly one published version, while it
only ever waits for the lock itself (microseconds), never for a refresh. Fixed shapes and fixed addresses are
what ONNX Runtime / TensorRT bindings and CUDA graphs want.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class SnapshotMeta:
    """Where a published snapshot came from."""

    version: int  # 1, 2, ... in publication order
    frame: int  # frame of the observation it was computed from
    sim_time: float  # sim time of that observation
    reasoning_text: str | None = None
    refresh_ms: float = float("nan")  # wall time of the refresh that produced it
    valid_tokens: int = 0  # number of real (unpadded) prefix tokens


class KVSlot:
    """One preallocated buffer: keys/values [L, B, Hkv, S, D], pad_mask [B, S] (True = valid), next_position [B]."""

    def __init__(self, index: int, shape: tuple[int, int, int, int, int], dtype: torch.dtype, device: torch.device):
        layers, batch, heads, capacity, dim = shape
        self.index = index
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.pad_mask = torch.zeros((batch, capacity), dtype=torch.bool, device=device)
        self.next_position = torch.zeros((batch,), dtype=torch.int64, device=device)
        self.meta: SnapshotMeta | None = None
        self.readers = 0  # guarded by the store's lock

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def load(
        self, keys: torch.Tensor, values: torch.Tensor, pad_mask: torch.Tensor, next_position: torch.Tensor
    ) -> int:
        """Copy a (possibly shorter) snapshot into this slot, padding the rest; returns the valid token count.

        Raises ValueError if the snapshot does not fit: silently truncating a prefix would drop the newest tokens.
        """
        length = keys.shape[3]
        if keys.shape[:3] != self.keys.shape[:3] or keys.shape[4] != self.keys.shape[4]:
            raise ValueError(
                f"snapshot keys {tuple(keys.shape)} do not match the buffer layout {tuple(self.keys.shape)}"
            )
        if length > self.capacity:
            raise ValueError(
                f"prefix of {length} tokens exceeds the runtime KV capacity {self.capacity}; "
                "raise RuntimeConfig.capacity (or AutoMoTConfig.max_prefix_tokens)"
            )
        self.keys[:, :, :, :length].copy_(keys)
        self.values[:, :, :, :length].copy_(values)
        self.pad_mask[:, :length].copy_(pad_mask)
        if length < self.capacity:
            # Zero the tail so a stale longer prefix never leaks through a missing mask bit.
            self.keys[:, :, :, length:].zero_()
            self.values[:, :, :, length:].zero_()
            self.pad_mask[:, length:] = False
        self.next_position.copy_(next_position)
        return int(self.pad_mask[0].sum())


@dataclass(frozen=True)
class SnapshotView:
    """A pinned, read-only view of the front slot (valid only inside ``DoubleBufferedKV.read``)."""

    keys: torch.Tensor
    values: torch.Tensor
    pad_mask: torch.Tensor
    next_position: torch.Tensor
    meta: SnapshotMeta
    slot: int


class DoubleBufferedKV:
    """Two preallocated KV slots with single-writer publication and pinned, never-torn reads."""

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        capacity: int,
        head_dim: int,
        batch: int = 1,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (num_layers, batch, num_kv_heads, capacity, head_dim)
        device = torch.device(device)
        self.slots = (KVSlot(0, shape, dtype, device), KVSlot(1, shape, dtype, device))
        self._front: int | None = None  # None until the first publication
        self._version = 0
        self._cond = threading.Condition(threading.Lock())
        self._writer = threading.Lock()  # enforces a single writer
        self.write_waits = 0  # times the writer had to wait for a reader to unpin its back slot

    @property
    def capacity(self) -> int:
        return self.slots[0].capacity

    @property
    def version(self) -> int:
        """Version of the front snapshot (0 = nothing published)."""
        return self._version

    @property
    def front_meta(self) -> SnapshotMeta | None:
        """Meta of the front snapshot (None = nothing published)."""
        with self._cond:
            return None if self._front is None else self.slots[self._front].meta

    @contextmanager
    def read(self) -> Iterator[SnapshotView | None]:
        """Pin the front slot for the body of the ``with``; yields None if nothing was published yet."""
        with self._cond:
            index = self._front
            if index is None:
                slot = None
            else:
                slot = self.slots[index]
                slot.readers += 1
        if slot is None:
            yield None
            return
        try:
            assert slot.meta is not None
            yield SnapshotView(slot.keys, slot.values, slot.pad_mask, slot.next_position, slot.meta, slot.index)
        finally:
            with self._cond:
                slot.readers -= 1
                if slot.readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self, timeout: float | None = None) -> Iterator[KVSlot]:
        """Yield the back slot to fill; on a clean exit with ``slot.meta`` set, publish it atomically.

        The caller must set ``slot.meta`` (its ``version`` is assigned here). If the body raises, nothing is
        published and the front snapshot stays as it was. Waits (up to ``timeout``) while a reader still pins the
        back slot, i.e. is still stepping on the snapshot that was front before the last swap.
        """
        if not self._writer.acquire(blocking=False):
            raise RuntimeError("DoubleBufferedKV supports a single writer at a time")
        try:
            with self._cond:
                back = self.slots[1 if self._front == 0 else 0]
                if back.readers:
                    self.write_waits += 1
                if not self._cond.wait_for(lambda: back.readers == 0, timeout=timeout):
                    raise TimeoutError(f"a reader pinned KV slot {back.index} for more than {timeout} s")
                back.meta = None  # unpublished from here on: a reader can no longer reach this slot
            yield back
            if back.meta is None:
                raise RuntimeError("DoubleBufferedKV.write: set slot.meta before leaving the block to publish")
            with self._cond:
                self._version += 1
                back.meta = replace(back.meta, version=self._version)
                self._front = back.index
                self._cond.notify_all()
        finally:
            self._writer.release()

    def notify(self) -> None:
        """Wake every waiter (used when the runtime fails or closes, so nobody waits for a version that never comes)."""
        with self._cond:
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait on the store's condition for an arbitrary predicate (woken by publications and notify())."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout=timeout)
