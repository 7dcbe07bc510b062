"""`hibachi.sched`: a thread's EEVDF slice set through `sched_setattr` and read back from the kernel."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

from hibachi.sched import MIN_SLICE_NS, get_slice, set_process_slice, set_slice, thread_ids

T = TypeVar("T")


def _in_a_thread(work: Callable[[], T]) -> T:
    """Run `work()` in a fresh thread (a slice is per thread) and return what it returned."""
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join()
    return out[0]


def test_a_thread_gets_the_slice_it_asks_for_and_keeps_its_niceness() -> None:
    def work() -> tuple[int, int, int]:
        before = get_slice()
        set_slice(250_000)
        return before, get_slice(), get_slice(threading.get_native_id())

    before, after, by_tid = _in_a_thread(work)
    assert before != 250_000
    assert after == by_tid == 250_000


def test_every_thread_of_another_process_gets_the_slice() -> None:
    code = "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); print(1)"
    child = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # its second thread is running
        threads = set_process_slice(MIN_SLICE_NS, child.pid)
        tids = thread_ids(child.pid)
        assert threads == len(tids) >= 2
        assert [get_slice(tid) for tid in tids] == [MIN_SLICE_NS] * len(tids)
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("slice_ns", [0, MIN_SLICE_NS - 1, 100_000_001])
def test_a_slice_outside_what_the_kernel_takes_is_refused_before_the_call(slice_ns: int) -> None:
    with pytest.raises(ValueError, match="a slice is"):
        set_slice(slice_ns)
