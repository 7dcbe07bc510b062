"""A shorter CPU time slice for a latency-sensitive process (Linux 6.12+, the EEVDF scheduler).

A voice call's audio and turns wait on one event loop; when the cores are busy with other
work (a database, a job worker, a neighbour on the host), a woken loop waits for the
running task's slice to end: ~1-3 ms by default, and more when several are queued. Linux's
EEVDF scheduler takes a slice per thread (`sched_setattr`'s `sched_runtime` for
SCHED_OTHER): a thread that asks for a shorter one gets an earlier virtual deadline and,
on waking, preempts a task with a longer slice at once. Its share of the CPU is unchanged
(that is what niceness sets). Python's `os` has no `sched_setattr`, so this calls it
through libc. Threads started later inherit the slice.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from pathlib import Path

# struct sched_attr: size, policy, flags, nice, priority, runtime, deadline, period, util_min, util_max
_ATTR = struct.Struct("IIQiIQQQII")
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr
MIN_SLICE_NS = 100_000  # the kernel refuses shorter ones
MAX_SLICE_NS = 100_000_000


class SliceUnsupported(OSError):
    """The kernel or machine can't set a thread's slice."""


def _call(number: int, *args: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, *args) != 0:
        errno = ctypes.get_errno()
        raise SliceUnsupported(errno, os.strerror(errno))


def _numbers() -> tuple[int, int]:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None or not hasattr(os, "sched_getaffinity"):
        raise SliceUnsupported(f"no sched_setattr on {platform.system()} {platform.machine()}")
    return numbers


def get_slice(tid: int = 0) -> int:
    """The thread's slice in ns (0: the calling thread)."""
    _, get_number = _numbers()
    buffer = ctypes.create_string_buffer(_ATTR.size)
    _call(get_number, tid, buffer, _ATTR.size, 0)
    return int(_ATTR.unpack(buffer.raw)[5])


def set_slice(slice_ns: int, tid: int = 0) -> None:
    """Ask for a `slice_ns` slice for one thread, keeping its niceness and policy (SCHED_OTHER)."""
    if not MIN_SLICE_NS <= slice_ns <= MAX_SLICE_NS:
        raise ValueError(f"a slice is {MIN_SLICE_NS}-{MAX_SLICE_NS} ns, not {slice_ns}")
    set_number, _ = _numbers()
    niceness = os.getpriority(os.PRIO_PROCESS, tid)
    attr = _ATTR.pack(_ATTR.size, os.SCHED_OTHER, 0, niceness, 0, slice_ns, 0, 0, 0, 0)
    _call(set_number, tid, attr, 0)
    if get_slice(tid) != slice_ns:  # before 6.12 the kernel takes the call and ignores the slice
        raise SliceUnsupported(f"Linux {platform.release()} ignores a thread's slice (6.12+ takes one)")


def set_process_slice(slice_ns: int, pid: int) -> int:
    """The same slice for every thread `pid` has now (threads and processes it starts later
    inherit it); returns how many threads."""
    tids = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    for tid in tids:
        set_slice(slice_ns, tid)
    return len(tids)
