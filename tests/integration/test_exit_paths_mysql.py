"""Exit paths and holders against a real MariaDB (issue 12 items 1-3, 5-7; issue 17).

Interrupts are real: SIGINT delivered to the main thread while it waits for a connection or
while it connects (to a listener that never answers), ``SystemExit`` from hooks. Every
synchronisation is an event, a barrier or a queue; the only timing assertions are
generous "not the whole timeout" bounds. After each scenario the pool has nothing in use
and the server never saw more sessions of the pool user than the cap.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from typing import Any

import pytest

from flask_peewee_pool import PooledMySQLDatabase
from flask_peewee_pool.core.errors import PoolTimeout
from flask_peewee_pool.orm.database import WrongHolder
from tests.integration.conftest import ServerCountMonitor
from tests.unit.fakes import WatchedDeque

pytestmark = pytest.mark.mysql

WAIT = 10.0


def _interrupt_main_when(ready: threading.Event) -> threading.Thread:
    """SIGINT to the main thread (a real KeyboardInterrupt) once ``ready`` is set."""
    main = threading.main_thread().ident
    assert main == threading.get_ident(), "must run in the main thread"

    def fire() -> None:
        if ready.wait(WAIT):
            signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=fire, name="interrupter", daemon=True)
    thread.start()
    return thread


def _hold_in_thread(db: Any) -> tuple[threading.Thread, threading.Event, threading.Event]:
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.connection_context():
            db.execute_sql("SELECT 1").fetchone()
            holding.set()
            release.wait(WAIT)

    thread = threading.Thread(target=hold, name="holder", daemon=True)
    thread.start()
    assert holding.wait(WAIT)
    return thread, holding, release


def _assert_clean(db: Any, pool_user: Any, cap: int) -> None:
    stats = db.pool.stats()
    assert stats.in_use == 0 and stats.waiting == 0 and stats.opening == 0, stats
    assert pool_user.server_connections() <= cap


# ------------------------------------------------------------------- item 1: interrupts


def test_keyboard_interrupt_while_waiting_leaves_no_ghost_waiter(
        make_mysql_db: Any, mysql_pool_user: Any) -> None:
    db = make_mysql_db(max_connections=1, timeout=30)
    db.pool._waiters = WatchedDeque()  # to see the main thread queue up
    holder, _, release = _hold_in_thread(db)
    queued = threading.Event()
    watcher = threading.Thread(
        target=lambda: (db.pool._waiters.wait_appended(1), queued.set()), daemon=True)
    watcher.start()
    _interrupt_main_when(queued)
    with pytest.raises(KeyboardInterrupt):
        db.connect()
    assert db.pool.stats().waiting == 0
    release.set()
    holder.join(WAIT)
    t0 = time.monotonic()
    with db.connection_context():  # before the fix: a 30 s CheckoutTimeout
        db.execute_sql("SELECT 1").fetchone()
    waited = time.monotonic() - t0
    assert waited < WAIT / 2
    _assert_clean(db, mysql_pool_user, 1)
    print(f"\nSIGINT while waiting, cap 1: next checkout after the holder returned in "
          f"{waited:.3f} s")


def test_keyboard_interrupt_while_connecting_frees_the_slot(mysql_pool_user: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = threading.Event()
    sockets: list[socket.socket] = []

    def accept() -> None:
        conn, _ = listener.accept()  # the pool is now inside connect(): never greeted
        sockets.append(conn)
        accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    db = PooledMySQLDatabase("test", host="127.0.0.1", port=listener.getsockname()[1],
                             user="nobody", max_connections=1, connect_timeout=30,
                             timeout=30)
    try:
        _interrupt_main_when(accepted)
        with pytest.raises(KeyboardInterrupt):
            db.connect()
        stats = db.pool.stats()
        assert (stats.size, stats.opening, stats.in_use) == (0, 0, 0), stats
        assert db.is_closed()
    finally:
        db.close_pool()
        listener.close()
        for s in sockets:
            s.close()


def test_system_exit_from_a_check_hook_does_not_strand_the_connection(
        make_mysql_db: Any, mysql_pool_user: Any) -> None:
    calls = []

    def check(raw: Any) -> None:
        calls.append(raw)
        if len(calls) == 1:
            raise SystemExit("check hook interrupted")

    db = make_mysql_db(max_connections=1, ping_after=0, check=check, timeout=5)
    with db.connection_context():
        db.execute_sql("SELECT 1")
    with pytest.raises(SystemExit):
        db.connect()
    assert db.is_closed()
    with db.connection_context():  # the slot came back
        db.execute_sql("SELECT 1").fetchone()
    _assert_clean(db, mysql_pool_user, 1)


def test_system_exit_from_a_reset_hook_does_not_strand_the_connection(
        make_mysql_db: Any, mysql_pool_user: Any) -> None:
    calls = []

    def reset(raw: Any) -> None:
        calls.append(raw)
        if len(calls) == 1:
            raise SystemExit("reset hook interrupted")

    db = make_mysql_db(max_connections=1, reset=reset, timeout=5)
    db.connect()
    db.execute_sql("SELECT 1")
    with pytest.raises(SystemExit):
        db.close()
    assert db.is_closed()
    with db.connection_context():
        db.execute_sql("SELECT 1").fetchone()
    _assert_clean(db, mysql_pool_user, 1)


# --------------------------------------------- item 2: retirement racing a slow checkin


@pytest.mark.parametrize("race", ["close_all", "close_stale", "reclaim"])
def test_close_all_racing_a_slow_reset_never_doubles_the_cap(
        make_mysql_db: Any, mysql_pool_user: Any, race: str) -> None:
    in_reset, finish_reset = threading.Event(), threading.Event()

    def reset(raw: Any) -> None:
        if threading.current_thread().name == "returning":
            in_reset.set()
            finish_reset.wait(WAIT)

    db = make_mysql_db(max_connections=1, reset=reset, timeout=30)
    with ServerCountMonitor(mysql_pool_user) as monitor:
        def use_and_return() -> None:
            db.connect()
            db.execute_sql("SELECT 1")
            db.close()

        returning = threading.Thread(target=use_and_return, name="returning")
        returning.start()
        assert in_reset.wait(WAIT)
        if race == "close_all":
            db.close_all()
        elif race == "close_stale":
            db.close_stale(age=0)
        else:
            db.pool.reclaim(older_than=0)
        finish_reset.set()
        returning.join(WAIT)
        # Two checkouts at once must be impossible with max_connections=1.
        db.connect()
        with pytest.raises(PoolTimeout):
            db.pool.checkout(timeout=0.2)
        db.close()
    assert monitor.maximum <= 1
    _assert_clean(db, mysql_pool_user, 1)


# ---------------------------------------------------- item 3: shrink while expiring


def test_shrink_drains_with_a_short_lifetime(make_mysql_db: Any, mysql_pool_user: Any) -> None:
    db = make_mysql_db(max_connections=4, max_lifetime=0.3, lifetime_jitter=0.0, timeout=10)
    start, done = threading.Barrier(5), threading.Barrier(5)

    def hold() -> None:
        with db.connection_context():
            db.execute_sql("SELECT 1")
            start.wait(WAIT)
            done.wait(WAIT)

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    start.wait(WAIT)
    db.resize(max_connections=1)
    done.wait(WAIT)
    for t in threads:
        t.join(WAIT)
    connects = db.pool.stats().counters.connects
    deadline = time.monotonic() + WAIT
    while (db.pool.size > 1 or mysql_pool_user.server_connections() > 1) and \
            time.monotonic() < deadline:
        time.sleep(0.05)  # polling the server: sessions end asynchronously
    assert db.pool.size <= 1 and mysql_pool_user.server_connections() <= 1
    drained_connects = db.pool.stats().counters.connects - connects
    window_start = db.pool.stats().counters.connects
    time.sleep(2.0)  # two seconds of no traffic: one connection's recycling at most
    idle_connects = db.pool.stats().counters.connects - window_start
    assert db.pool.size <= 1
    assert idle_connects <= 2.0 / 0.15, idle_connects  # was 60 (four connections, forever)
    assert mysql_pool_user.server_connections() <= 1
    print(f"\nshrink 4->1, max_lifetime=0.3: connects during drain {drained_connects}, "
          f"connects in 2 s idle {idle_connects}, size {db.pool.size}")


# ------------------------------------------------------------ item 5: init, dispose


def test_init_while_another_thread_holds_a_connection(make_mysql_db: Any,
                                                      mysql_pool_user: Any) -> None:
    db = make_mysql_db(max_connections=2)
    holder, _, release = _hold_in_thread(db)
    old_pool = db.pool
    params = mysql_pool_user.as_dict()
    database = params.pop("database")
    db.init(database, max_connections=2, **params)
    release.set()
    holder.join(WAIT)  # its close() returned to the old pool: no CheckinError
    assert old_pool.stats().size == 0
    with db.connection_context():
        db.execute_sql("SELECT 1").fetchone()
    db.close_pool()
    mysql_pool_user.wait_until(0, timeout=WAIT)


def test_dispose_with_a_connection_open(make_mysql_db: Any, mysql_pool_user: Any) -> None:
    db = make_mysql_db(max_connections=2)
    holder, _, release = _hold_in_thread(db)
    db.connect()
    old_pool = db.pool
    db.dispose()
    assert db.pool is not old_pool and old_pool.closed and db.is_closed()
    release.set()
    holder.join(WAIT)
    assert old_pool.stats().size == 0
    with db.connection_context():
        db.execute_sql("SELECT 1").fetchone()
    db.close_pool()
    mysql_pool_user.wait_until(0, timeout=WAIT)


# ------------------------------------------------- item 7: holders that end holding one


def test_threads_ending_without_close_give_their_connections_back(
        make_mysql_db: Any, mysql_pool_user: Any, caplog: Any) -> None:
    db = make_mysql_db(max_connections=4, timeout=30)
    all_hold = threading.Barrier(4)

    def leak() -> None:
        db.execute_sql("SELECT 1").fetchone()  # autoconnect; never closed
        db.execute_sql("BEGIN")
        all_hold.wait(WAIT)

    with ServerCountMonitor(mysql_pool_user) as monitor:
        threads = [threading.Thread(target=leak, name=f"leaker-{i}") for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        t0 = time.monotonic()
        with db.connection_context():  # the fifth: before the fix, a 30 s timeout
            assert db.execute_sql("SELECT @@in_transaction").fetchone()[0] == 0
        waited = time.monotonic() - t0
        on_server = mysql_pool_user.server_connections()
    assert waited < 5.0, waited
    assert on_server <= 4
    stats = db.pool.stats()
    assert stats.counters.reclaimed_abandoned == 4 and stats.in_use == 0
    assert monitor.maximum <= 4
    warnings = [r for r in caplog.records if "ended without returning" in r.getMessage()]
    assert len(warnings) == 4
    print(f"\n4 threads ended holding a connection, cap 4: fifth checkout in {waited:.3f} s, "
          f"server sessions after it {on_server} (sampled max {monitor.maximum})")


# ------------------------------------------------------------ issue 17: one holder


def test_second_thread_on_a_shared_state_is_refused_before_sending(
        make_mysql_db: Any, mysql_pool_user: Any) -> None:
    db = make_mysql_db(max_connections=2, thread_safe=False)
    with db.connection_context():
        db.execute_sql("DROP TABLE IF EXISTS fpp_it_holder")
        db.execute_sql("CREATE TABLE fpp_it_holder (who VARCHAR(20))")
    db.connect()
    refused: list[BaseException] = []

    def intrude() -> None:
        try:
            db.execute_sql("INSERT INTO fpp_it_holder VALUES ('intruder')")
        except WrongHolder as exc:
            refused.append(exc)

    t = threading.Thread(target=intrude, name="intruder")
    t.start()
    t.join(WAIT)
    db.execute_sql("INSERT INTO fpp_it_holder VALUES ('holder')")
    assert len(refused) == 1
    rows = [r[0] for r in db.execute_sql("SELECT who FROM fpp_it_holder").fetchall()]
    assert rows == ["holder"]  # nothing from the intruder reached the server
    db.execute_sql("DROP TABLE fpp_it_holder")
    db.close()
    _assert_clean(db, mysql_pool_user, 2)
