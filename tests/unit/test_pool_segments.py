"""Segments: capacity shares, home segments, stealing, borrowing, and the exact global cap."""

from __future__ import annotations

import collections
import threading
import time

import pytest

from flask_peewee_pool.core import concurrency
from flask_peewee_pool.core.pool import _split
from tests.unit.fakes import (
    FakeClock,
    FakeDriver,
    Interrupt,
    check_accounting,
    give,
    join_all,
    start,
    take,
)


def set_home(pool, index: int) -> None:
    """Pin the calling thread's home segment (normally assigned round-robin)."""
    pool._home_record().segment = pool._segments[index]


@pytest.mark.parametrize("max_connections", [1, 2, 3, 4, 5, 7, 10, 16, 17, 31, 100, 1001])
@pytest.mark.parametrize("segments", [None, 1, 2, 3, 4, 5, 8, 64])
def test_capacities_sum_exactly_to_max_connections(new_pool, max_connections, segments):
    pool = new_pool(max_connections=max_connections, segments=segments)
    caps = [seg.capacity for seg in pool._segments]
    assert sum(caps) == max_connections
    assert all(cap >= 1 for cap in caps), "no segment without capacity"
    assert max(caps) - min(caps) <= 1, "shares as even as possible"
    wanted = 4 if segments is None else segments
    assert len(caps) == min(wanted, max_connections)
    assert pool.stats().segments == len(caps)


@pytest.mark.parametrize("gil_disabled", [False, True])
def test_segments_are_made_apart_only_without_the_gil(monkeypatch, gil_disabled):
    """On free-threaded CPython each segment is made by a thread of its own (so no two
    share a cache line, see concurrency.made_apart); under the GIL, here, in order."""
    monkeypatch.setattr(concurrency, "_gil_disabled", lambda: gil_disabled)
    made = concurrency.made_apart([threading.current_thread for _ in range(3)])
    if gil_disabled:
        assert len({id(t) for t in made}) == 3 and threading.current_thread() not in made
    else:
        assert made == [threading.current_thread()] * 3
    assert concurrency.made_apart([lambda i=i: i for i in range(5)]) == list(range(5))
    with pytest.raises(ZeroDivisionError):
        concurrency.made_apart([lambda: 1, lambda: 1 / 0, lambda: 3])


def test_made_apart_threads_are_alive_together(monkeypatch):
    """Each factory's thread waits until all have made their object: a thread that had
    exited would hand its half-used allocator pages to the next, and their objects would
    sit side by side again. Here every factory meets the others at a barrier, which only
    threads alive together can pass."""
    monkeypatch.setattr(concurrency, "_gil_disabled", lambda: True)
    meet = threading.Barrier(3, timeout=10)
    made = concurrency.made_apart([lambda: (meet.wait(), threading.get_ident())[1]] * 3)
    assert len(set(made)) == 3


def test_made_apart_interrupted_lets_its_threads_go(monkeypatch):
    monkeypatch.setattr(concurrency, "_gil_disabled", lambda: True)
    before = threading.active_count()

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        concurrency.made_apart([object, interrupted, object])
    assert threading.active_count() == before, "every allocation thread has ended"


def test_split_is_exact_for_many_combinations():
    for total in range(1, 300):
        for parts in range(1, min(total, 40) + 1):
            shares = _split(total, parts)
            assert sum(shares) == total and len(shares) == parts
            assert max(shares) - min(shares) <= 1


def test_home_segments_spread_threads_evenly(new_pool):
    pool = new_pool(max_connections=8, segments=4)
    homes: list[int] = []
    lock = threading.Lock()

    def record():
        index = pool._home_segment().index
        assert pool._home_segment().index == index, "a thread keeps its home"
        with lock:
            homes.append(index)

    join_all([start(record, f"t{i}") for i in range(12)])
    assert sorted(collections.Counter(homes).values()) == [3, 3, 3, 3]


def test_checkout_prefers_home_segment_and_fast_path_touches_one_lock(new_pool, quiet):
    pool = new_pool(max_connections=4, segments=2, **quiet)
    set_home(pool, 1)
    conn = take(pool)
    assert conn.segment is pool._segments[1]
    give(pool, conn)
    before = [seg.lock.acquisitions for seg in pool._segments]
    waiters_before = pool._waiters_lock.acquisitions
    again = take(pool)
    assert again is conn
    after = [seg.lock.acquisitions for seg in pool._segments]
    assert [a - b for a, b in zip(after, before, strict=True)] == [0, 1]
    assert pool._waiters_lock.acquisitions == waiters_before
    give(pool, again)


def test_steals_idle_connection_from_another_segment(new_pool, driver, quiet):
    pool = new_pool(max_connections=2, segments=2, **quiet)

    def owner():
        set_home(pool, 0)
        conn = take(pool)
        give(pool, conn)
        return conn

    idle = start(owner, "owner").get()
    assert idle.segment is pool._segments[0]

    def thief():
        set_home(pool, 1)
        conn = take(pool)
        give(pool, conn)
        return conn

    assert start(thief, "thief").get() is idle
    assert driver.calls["connect"] == 1, "an idle connection beats a new one"


def test_idle_in_another_segment_beats_a_free_home_slot_and_moves_home(
        new_pool, driver, quiet):
    """An idle connection in a neighbour is taken rather than a new one opened in a free
    home slot; it then moves home with its slot: without that the thread would find its
    home empty and go back to the neighbour (the slow path, the neighbour's lock) at
    every checkout."""
    pool = new_pool(max_connections=4, segments=2, **quiet)
    set_home(pool, 0)
    conn = take(pool)
    give(pool, conn)
    set_home(pool, 1)
    assert take(pool) is conn
    assert conn.segment is pool._segments[1]
    assert [seg.slots for seg in pool._segments] == [0, 1]
    check_accounting(pool)
    give(pool, conn)
    assert [len(seg.idle) for seg in pool._segments] == [0, 1]
    before = [seg.lock.acquisitions for seg in pool._segments]
    assert take(pool) is conn
    after = [seg.lock.acquisitions for seg in pool._segments]
    assert [b - a for a, b in zip(before, after, strict=True)] == [0, 1], "home lock only"
    give(pool, conn)
    assert driver.calls["connect"] == 1
    assert pool.stats().counters.checkouts == 3


def test_a_stolen_connection_stays_where_it_is_when_home_is_full(new_pool, driver, quiet):
    pool = new_pool(max_connections=2, segments=2, **quiet)  # one slot per segment
    set_home(pool, 1)
    mine = take(pool)
    set_home(pool, 0)
    other = take(pool)
    give(pool, other)
    set_home(pool, 1)
    assert take(pool) is other
    assert other.segment is pool._segments[0] and mine.segment is pool._segments[1]
    assert [seg.slots for seg in pool._segments] == [1, 1]
    check_accounting(pool)
    give(pool, other)
    give(pool, mine)
    assert [len(seg.idle) for seg in pool._segments] == [1, 1]


#: (owner's home, thief's home, lock to interrupt, blocking acquisitions of it to let by):
#: the move's first and second lock wait, stealing in either direction (the thief's own
#: home lock is taken once, blocking, by its fast path before the move).
MOVE_WAITS = {
    "0->1, first lock": (0, 1, 0, 0),
    "0->1, second lock": (0, 1, 1, 1),
    "1->0, first lock": (1, 0, 0, 1),
    "1->0, second lock": (1, 0, 1, 0),
}


@pytest.mark.parametrize("where", list(MOVE_WAITS))
def test_a_move_interrupted_waiting_for_a_lock_retires_the_connection(
        new_pool, driver, clock, quiet, where):
    """A BaseException while the thief waits for either segment lock of the move: the
    connection (already taken) is retired, not lost, and the exception propagates."""
    owner, thief, index, let_by = MOVE_WAITS[where]
    pool = new_pool(max_connections=4, segments=2, **quiet)
    set_home(pool, owner)
    conn = take(pool)
    give(pool, conn)
    lock = pool._segments[index].lock
    real_acquire = lock.acquire
    armed = [True]
    blocking_acquisitions = [0]

    def acquire(blocking: bool = True, timeout: float = -1) -> bool:
        if blocking and armed:
            blocking_acquisitions[0] += 1
            if blocking_acquisitions[0] > let_by:
                armed.clear()
                raise Interrupt()
        return real_acquire(blocking, timeout)

    lock.acquire = acquire
    set_home(pool, thief)
    with pytest.raises(Interrupt) as caught:
        pool.checkout()
    assert any(entry.name == "_move" for entry in caught.traceback), "in the move's wait"
    assert conn.retired and pool.stats().in_use == 0
    check_accounting(pool)
    pool.maintainer.tick(clock())
    assert conn.raw.closed
    held = [take(pool, timeout=0) for _ in range(4)]
    check_accounting(pool)
    for c in held:
        give(pool, c)


@pytest.mark.parametrize("reading", ["size", "stats", "idle_count"])
def test_a_reading_never_counts_a_moving_connection_twice(new_pool, driver, quiet, reading):
    """The readers that sum segments hold every segment lock at once: a move between
    reading one segment and the next would count the connection twice (or not at all).
    Here the connection moves to the other segment at every moment the reader holds no
    segment lock."""
    pool = new_pool(max_connections=2, segments=2, **quiet)
    set_home(pool, 0)
    conn = take(pool)
    give(pool, conn)  # idle in segment 0
    reader, in_reading, moves = threading.get_ident(), [], []

    def thief() -> None:
        set_home(pool, 1 - conn.segment.index)
        give(pool, take(pool))  # takes it from the other segment and moves it home

    def after_release(_lock: object) -> None:
        if in_reading and threading.get_ident() == reader and not driver.watch.held_by_me():
            where = conn.segment
            start(thief, f"thief{len(moves)}").get()
            assert conn.segment is not where, "moved"
            moves.append(conn.segment.index)

    driver.watch.after_release = after_release
    in_reading.append(True)
    if reading == "stats":
        stats = pool.stats()
        value = (stats.size, stats.idle, stats.in_use)
    else:
        value = {"size": lambda: pool.size, "idle_count": pool.idle_count}[reading]()
    in_reading.clear()
    driver.watch.after_release = None
    assert moves, "moved during the reading"
    assert value in (1, (1, 1, 0))


def test_borrows_capacity_from_another_segment_when_home_is_full(new_pool, driver, quiet):
    pool = new_pool(max_connections=4, segments=2, **quiet)
    set_home(pool, 0)
    held = [take(pool) for _ in range(4)]
    assert [c.segment.index for c in held] == [0, 0, 1, 1]
    assert [seg.slots for seg in pool._segments] == [2, 2]
    assert len({id(c.raw) for c in held}) == 4
    assert driver.calls["connect"] == 4
    check_accounting(pool)
    for conn in held:
        give(pool, conn)
    # Returned to their own segments.
    assert [len(seg.idle) for seg in pool._segments] == [2, 2]


def test_single_connection_pool_has_one_segment(new_pool):
    pool = new_pool(max_connections=1, segments=8)
    assert len(pool._segments) == 1


def _hammer(pool, driver: FakeDriver, clock: FakeClock, *, threads: int, rounds: int,
            break_every: int) -> dict[str, int]:
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()
    lock = threading.Lock()
    state = {"out": 0, "max_out": 0, "done": 0}

    def maintain():
        barrier.wait()
        while not stop.is_set():
            pool.maintainer.tick(clock())
            stop.wait(0.0005)

    def work(i: int):
        barrier.wait()
        for r in range(rounds):
            conn = take(pool, timeout=30)
            with lock:
                state["out"] += 1
                state["max_out"] = max(state["max_out"], state["out"])
            raw = conn.raw
            assert raw.holder == threading.get_ident()
            time.sleep(0)  # let others run while we hold it (load shaping, not sync)
            broken = (i * rounds + r) % break_every == 0
            if broken and r % 2:
                raw.broken = True
            elif (i + r) % 5 == 0:
                raw.in_transaction = True
            with lock:
                state["out"] -= 1
            give(pool, conn, broken=broken and not r % 2)
        with lock:
            state["done"] += 1

    maintainer = start(maintain, "maintainer")
    workers = [start(lambda i=i: work(i), f"worker-{i}") for i in range(threads)]
    try:
        join_all(workers, timeout=60)
    finally:
        stop.set()
        maintainer.get()
    pool.maintainer.tick(clock())
    return state


def test_global_cap_is_exact_under_50_threads(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=5, segments=4, timeout=30, **quiet)
    state = _hammer(pool, driver, clock, threads=50, rounds=60, break_every=13)
    assert state["done"] == 50
    assert state["max_out"] <= 5
    assert driver.max_open <= 5, f"{driver.max_open} fake connections open at once"
    assert state["max_out"] >= 2, "the hammer did not overlap at all"
    s = pool.stats()
    assert s.in_use == 0 and s.waiting == 0 and s.opening == 0
    assert s.size == len(driver.open_connections()), "pool and server agree"
    assert s.counters.checkouts == 50 * 60
    assert s.counters.retired_broken > 0
    assert s.counters.rollbacks > 0
    check_accounting(pool)


def test_global_cap_is_exact_with_one_segment_per_connection(new_pool, driver, clock, quiet):
    pool = new_pool(max_connections=3, segments=3, timeout=30, ping_after=0.0,
                    **{k: v for k, v in quiet.items() if k != "ping_after"})
    state = _hammer(pool, driver, clock, threads=20, rounds=50, break_every=7)
    assert state["max_out"] <= 3
    assert driver.max_open <= 3
    assert pool.stats().size == len(driver.open_connections())
    check_accounting(pool)
