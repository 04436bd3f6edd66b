"""On free-threaded CPython, what a checkout + return through peewee shares between threads.

Each reference taken to an object another thread made is an atomic write of its count, and
when every thread loads that object the cache line bounces between cores (docs/benchmarks.md,
"Free-threaded CPython 3.13t"). Wall-time speed-ups on a shared VM wobble more than one such
object costs, so this counts instead (``benchmarks.sharedrefs``: gdb on
``_Py_DecRefShared``): the objects a worker thread releases that the main thread made.

Runs in ``benchmarks/freethreaded.sh test`` (3.13t, gdb); skipped on a GIL build, where
every count is one shared field and the question does not arise.
"""

from __future__ import annotations

import shutil
import sysconfig

import pytest

pytestmark = [
    pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"),
                       reason="counts a free-threaded build's shared reference counts"),
    pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb to count"),
    pytest.mark.timeout(300),
]


def test_peewee_layer_shares_only_the_database_and_its_thread_local() -> None:
    """``db.connect(); db.close()``: the application's ``db`` (loaded by the caller and
    read once by each method: 4) and its thread-local (read once by each: 2). Everything
    else a unit touches is the thread's own or its home segment's (the segment's objects
    are made by allocation threads, so they are counted apart, as "other")."""
    from benchmarks.sharedrefs import count

    rec = count("ours", units=3)
    assert rec["shared_by_type"] == {"FakePooledDatabase": 4, "_thread._local": 2}, rec
    assert rec["other_per_unit"] > 0, "the probe saw nothing: is the breakpoint set?"


def test_pool_alone_shares_only_itself_and_its_thread_local() -> None:
    """``pool.checkin(pool.checkout())``: the pool (loaded by the caller for each call and
    read by each method) and, in checkout, its thread-local of homes."""
    from benchmarks.sharedrefs import count

    rec = count("ours-pool", units=3)
    assert rec["shared_by_type"] == {"ConnectionPool": 6, "_thread._local": 1}, rec
