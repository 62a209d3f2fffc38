"""Per-thread CPU settings for the runtime's two paths (torch intra-op threads, slow-path nice value)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)


def set_torch_threads(n: int) -> None:
    # Only when different: at::set_num_threads also resizes a shared pthreadpool, which is not free.
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``n`` torch threads in the calling thread inside the block, the caller's own count again after it (setting the
    count is cheap: ~0.2 us for a set and a reset on the 2-core dev machines)."""
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's nice value (Linux: setpriority on a thread id affects that thread only).

    Under CPU contention the kernel then runs the fast path first; OpenMP threads the worker spawns inherit it.
    """
    if increment <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError as exc:  # e.g. a sandbox forbidding it: the runtime still works, only without the bias
        log.warning("could not lower the slow-path thread priority: %s", exc)
