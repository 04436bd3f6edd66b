"""One connection, one holder (issue 17) and holders that end holding one (issue 12, item 7).

A peewee database over the fake driver: its raw connections record every statement
"sent", so "nothing was sent" is checkable. Two real threads, and two real greenlets (the
``greenlet`` package, no monkey-patching), share one connection state; the second holder's
query raises :class:`WrongHolder` before anything reaches the connection.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import peewee
import pytest

from flask_peewee_pool.core import concurrency
from flask_peewee_pool.core.errors import HolderError, PoolClosed
from flask_peewee_pool.orm.database import PooledDatabase, WrongHolder
from tests.unit.fakes import WAIT, FakeDriver, start


class FakeDatabase(PooledDatabase, peewee.Database):
    kind = "fake"

    def __init__(self, driver: FakeDriver, **kwargs: Any) -> None:
        self._fake_driver = driver
        kwargs.setdefault("max_lifetime", None)
        kwargs.setdefault("keepalive", None)
        kwargs.setdefault("ping_after", None)
        super().__init__("fake", **kwargs)

    def _make_driver(self) -> FakeDriver:
        return self._fake_driver


@pytest.fixture
def make_db():
    made: list[FakeDatabase] = []

    def make(**kwargs: Any) -> FakeDatabase:
        db = FakeDatabase(FakeDriver(), **kwargs)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close_pool()


def _sent(db: FakeDatabase) -> list[str]:
    return [sql for raw in db._fake_driver.connections for sql in raw.executed]


# ------------------------------------------------------------------------ one holder


def test_two_threads_sharing_one_state_second_use_raises_nothing_sent(make_db):
    db = make_db(thread_safe=False)  # one state object for every thread
    db.connect()
    db.execute_sql("SELECT 'mine'")
    other = start(lambda: db.execute_sql("SELECT 'not mine'"), "intruder")
    with pytest.raises(WrongHolder) as caught:
        other.get()
    assert _sent(db) == ["SELECT 'mine'"]
    message = str(caught.value)
    assert "thread 'intruder'" in message and "MainThread" in message
    assert "pool 'fake'" in message and "db.connection_context()" in message
    assert isinstance(caught.value, HolderError) and isinstance(caught.value,
                                                               peewee.InterfaceError)
    db.execute_sql("SELECT 'still mine'")  # the holder is unaffected
    db.close()
    assert db.pool.stats().in_use == 0


def test_two_greenlets_sharing_one_state_second_use_raises_nothing_sent(make_db):
    """Greenlets without monkey-patching share the thread's peewee state: what
    ``--preload -k gevent`` did to every request before this check."""
    greenlet = pytest.importorskip("greenlet")  # not on free-threaded 3.13 (no wheel there)
    db = make_db()
    results: dict[str, Any] = {}

    def first() -> None:
        db.connect()
        db.execute_sql("SELECT 'first'")
        main.switch()  # the second greenlet runs while the first holds the connection
        results["first"] = db.execute_sql("SELECT 'first again'").fetchone()
        db.close()

    def second() -> None:
        try:
            db.execute_sql("SELECT 'second'")
        except WrongHolder as exc:
            results["second"] = exc

    main = greenlet.getcurrent()
    g1, g2 = greenlet.greenlet(first), greenlet.greenlet(second)
    g1.switch()
    g2.switch()
    g1.switch()
    assert isinstance(results["second"], WrongHolder)
    assert "greenlet" in str(results["second"])
    assert _sent(db) == ["SELECT 'first'", "SELECT 'first again'"]
    assert db.pool.stats().in_use == 0


def test_the_holder_is_named_by_its_thread_s_current_name(make_db):
    """The pool keeps the holder's Thread, not a copy of its name: a rename shows."""
    db = make_db(timeout=0.01)
    db.connect()
    me = threading.current_thread()
    old_name = me.name
    try:
        me.name = "renamed-holder"
        assert db._state.pooled.holder == "renamed-holder"
        assert db.pool.stats().holders[0]["thread"] == "renamed-holder"
    finally:
        me.name = old_name
        db.close()


def test_holder_check_can_be_turned_off_per_database(make_db):
    db = make_db(thread_safe=False)
    db.check_holder = False
    db.connect()
    start(lambda: db.execute_sql("SELECT 'shared on purpose'"), "other").get()
    assert _sent(db) == ["SELECT 'shared on purpose'"]
    db.close()


def test_holder_key_tells_threads_and_greenlets_apart():
    greenlet = pytest.importorskip("greenlet")
    keys = {concurrency.holder_key()}
    keys.add(start(concurrency.holder_key, "t").get())
    keys.add(greenlet.greenlet(concurrency.holder_key).switch())
    assert len(keys) == 3
    assert concurrency.holder_key() in keys  # stable for the same holder


def test_adopting_patched_threading_gives_a_fresh_state_and_returns_the_old_connection(
        make_db):
    db = make_db()
    db.connect()
    pooled = db._state.pooled
    old = db._state
    db._adopt_threading()
    assert db._state is not old and db._state.closed
    assert pooled.state == "idle"  # returned, not stranded in the shared state
    assert db.pool.stats().in_use == 0


# ---------------------------------------------------------------- holders that end


def test_threads_that_end_holding_a_connection_give_it_back(make_db, caplog):
    """4 threads check out and exit without close(), cap 4: a fifth checkout at once."""
    db = make_db(max_connections=4, timeout=WAIT)
    ready = threading.Barrier(4)

    def leak() -> None:
        db.execute_sql("BEGIN")  # autoconnect, as peewee does at the first query
        db._state.conn.in_transaction = True
        ready.wait(WAIT)  # all four hold one at the same time

    with caplog.at_level(logging.WARNING, logger="flask_peewee_pool"):
        for worker in [start(leak, f"leaker-{i}") for i in range(4)]:
            worker.get()
        t0 = time.monotonic()
        db.connect()
        waited = time.monotonic() - t0
    assert waited < WAIT / 2  # generous: the point is "not the whole timeout"
    db.close()
    stats = db.pool.stats()
    assert stats.counters.reclaimed_abandoned == 4
    assert stats.in_use == 0 and stats.size <= 4
    assert stats.counters.rollbacks >= 3  # rolled back and reused, not just dropped
    warnings = [r.getMessage() for r in caplog.records if "ended without returning" in
                r.getMessage()]
    assert len(warnings) == 4
    assert all("pool 'fake'" in w and "test_holders.py" in w for w in warnings)
    # The holder is named after its thread ended (the name is read when reported).
    assert sorted(w.split("thread ")[1].split(" ended")[0] for w in warnings) == [
        f"'leaker-{i}'" for i in range(4)]
    assert len(db._fake_driver.open_connections()) <= 4


def test_a_thread_that_returns_its_connection_is_not_reclaimed(make_db):
    db = make_db(max_connections=1)

    def work() -> None:
        with db.connection_context():
            db.execute_sql("SELECT 1")

    start(work, "polite").get()
    db.pool.reclaim_abandoned()
    assert db.pool.stats().counters.reclaimed_abandoned == 0


def test_a_reclaimed_connection_is_not_taken_twice(make_db):
    db = make_db(max_connections=1)
    start(lambda: db.connect(), "leaker").get()
    db.pool.reclaim_abandoned()  # the checkout below may have done it already
    db.connect()
    db.pool.abandoned(db._state.pooled, db._state.pooled.checkouts - 1)  # a stale report
    assert db.pool.reclaim_abandoned() == 0
    assert db.pool.stats().in_use == 1
    db.close()


# ------------------------------------------------------------------ init and dispose


def _holding_in_another_thread(db):
    """A thread that connects, then waits for ``go_on`` to close; returned once it holds
    its connection (its result is what ``db.close()`` returned)."""
    holding, go_on = threading.Event(), threading.Event()

    def hold() -> bool:
        db.connect()
        holding.set()
        go_on.wait(WAIT)
        return db.close()

    worker = start(hold, "holder")
    holding.wait(WAIT)
    return worker, go_on


def test_init_while_another_thread_holds_a_connection(make_db):
    db = make_db(max_connections=2)
    worker, go_on = _holding_in_another_thread(db)
    old_pool = db.pool
    old_raw = old_pool.in_use_connections()[0].raw
    db.init("fake", max_connections=2)
    assert db.pool is not old_pool
    go_on.set()
    assert worker.get() is True  # no CheckinError: it went back to the pool it came from
    assert old_raw.closed and old_pool.stats().size == 0
    with db.connection_context():
        db.execute_sql("SELECT 1")


def test_dispose_forgets_the_pool_and_closes_what_comes_back(make_db):
    db = make_db(max_connections=2)
    worker, go_on = _holding_in_another_thread(db)
    db.connect()  # this thread's own connection too
    old_pool = db.pool
    db.dispose()
    assert db.pool is not old_pool and db.is_closed()
    assert old_pool.closed and old_pool.stats().size == 1  # the other thread's, in use
    go_on.set()
    assert worker.get() is True
    assert old_pool.stats().size == 0
    assert db._fake_driver.open_connections() == []
    with db.connection_context():  # a new pool
        db.execute_sql("SELECT 1")


# ------------------------------------------------------------------ the kept home


def test_a_holder_keeps_its_home_and_follows_a_new_pool(make_db):
    """Checkout and return go through the holder's home in the pool (kept in its state,
    so they read neither the pool nor its thread-local); init() and dispose() make a new
    pool, and the next connect moves the home there instead of failing on the old one."""
    db = make_db(max_connections=2)
    with db.connection_context():
        pass
    home = db._state.home
    assert home is not None and home.pool is db.pool
    with db.connection_context():
        assert db._state.pooled.pool is db.pool
    assert db._state.home is home, "kept across returns"
    for renew in (lambda: db.init("fake", max_connections=2), db.dispose):
        old = db.pool
        renew()
        assert old.closed and db.pool is not old
        with db.connection_context():
            assert db._state.pooled.pool is db.pool
            db.execute_sql("SELECT 1")
        assert db._state.home.pool is db.pool
        assert old.stats().size == 0
    db.close_pool()
    with pytest.raises(PoolClosed):
        db.connect()


def test_moving_home_to_a_new_pool_does_not_chain_its_errors_to_the_closed_one(make_db):
    """A holder whose pool was replaced moves to the new one outside the PoolClosed
    handler, so an error from the new pool reads as itself (no "During handling of the
    above exception" PoolClosed in the traceback the user sees)."""
    from flask_peewee_pool.orm.database import ConnectFailed

    db = make_db(max_connections=2)
    with db.connection_context():
        pass
    db.dispose()
    db._fake_driver.fail_connect = True
    with pytest.raises(ConnectFailed) as caught:
        db.connect()
    chain, exc = [], caught.value
    while exc is not None:
        chain.append(type(exc).__name__)
        exc = exc.__context__
    assert "PoolClosed" not in chain, chain
    db._fake_driver.fail_connect = False
    with db.connection_context():
        db.execute_sql("SELECT 1")


def test_a_shared_state_keeps_no_home(make_db):
    """thread_safe=False: one state for every thread, so no home is kept (a home names
    one thread); every connect asks the pool, and connections still come and go."""
    db = make_db(max_connections=2, thread_safe=False)
    for _ in range(3):
        with db.connection_context():
            db.execute_sql("SELECT 1")
        assert db._state.home is None
    assert db.pool.stats().in_use == 0 and db.pool.stats().idle == 1
