"""A thread's CPU time slice under Linux's EEVDF scheduler (6.12+), for a latency-sensitive process.

Linux takes a slice per thread (`sched_setattr`'s `sched_runtime` for SCHED_OTHER; 1.4 ms
by default on our 2-core hosts). A shorter one gets the thread earlier deadlines but switches
it out more often; a longer one lets it run a burst of work to the end before another task
on the core gets its turn. The server's event loop does its calls' work in bursts, and a
longer slice (`HIBACHI_SCHED_SLICE_US`, 6 ms) cut its 100-call tail while a 100 us one made
it worse (benchmarks/RESULTS.md, tenth session). The CPU share is unchanged: niceness sets
that. Python's `os` has no `sched_setattr`, so this calls it through libc. Threads and
processes started later inherit the slice.
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


def thread_ids(pid: int) -> list[int]:
    """The ids of the threads process `pid` has now (Linux's /proc)."""
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


def set_process_slice(slice_ns: int, pid: int) -> int:
    """The same slice for every thread `pid` has now (threads and processes it starts later
    inherit it); returns how many threads."""
    tids = thread_ids(pid)
    for tid in tids:
        set_slice(slice_ns, tid)
    return len(tids)
