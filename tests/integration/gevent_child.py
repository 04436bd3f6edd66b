"""gevent scenarios, run in a subprocess (monkey-patching cannot be undone in the test run).

``python -m tests.integration.gevent_child MODE PARAMS_JSON`` prints one JSON line.

* ``interrupts``: ``patch_all()`` first, then a pool of 10 and 10 greenlets; a
  ``gevent.Timeout`` and a ``greenlet.kill`` while waiting for a connection, while
  connecting (to a listener that never greets) and mid-query (``SELECT SLEEP(2)``), and
  greenlets that end holding a connection. After each: nothing in use, and 10 greenlets
  hold 10 distinct connections at once.
* ``preload``: what ``gunicorn --preload -k gevent`` does. The database is built and used
  in this process *before* patching (its maintainer starts as a real thread), the process
  forks, and the child patches, then serves 20 greenlets on 4 connections; each sets a
  session variable, yields, and must read its own value back.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _make_db(params: dict[str, Any], **kwargs: Any) -> Any:
    from flask_peewee_pool import PooledMySQLDatabase

    params = dict(params)
    database = params.pop("database")
    params.update(kwargs)
    return PooledMySQLDatabase(database, **params)


def _hold_all(db: Any, n: int) -> tuple[list[Any], Any, list[int]]:
    """n greenlets each holding a connection; returns them, the release event, their ids."""
    import gevent
    import gevent.event

    ids: list[int] = []
    all_in, go = gevent.event.Event(), gevent.event.Event()

    def one() -> None:
        with db.connection_context():
            ids.append(db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0])
            if len(ids) == n:
                all_in.set()
            go.wait(20)

    greenlets = [gevent.spawn(one) for _ in range(n)]
    if not all_in.wait(20):
        raise AssertionError(f"only {len(ids)} of {n} greenlets got a connection")
    return greenlets, go, ids


def _release(greenlets: list[Any], go: Any) -> list[str]:
    import gevent

    go.set()
    gevent.joinall(greenlets, timeout=20)
    return [repr(g.exception) for g in greenlets if g.exception is not None]


def _whole(db: Any, label: str, report: dict[str, Any]) -> None:
    """Nothing in use, and 10 greenlets get 10 distinct connections at once."""
    stats = db.pool.stats()
    greenlets, go, ids = _hold_all(db, 10)
    errors = _release(greenlets, go)
    report[label] = {"in_use_after": stats.in_use, "waiting_after": stats.waiting,
                     "opening_after": stats.opening, "ten_distinct": len(set(ids)) == 10,
                     "errors": errors, "in_use_end": db.pool.stats().in_use}


def interrupts(params: dict[str, Any]) -> dict[str, Any]:
    from gevent import monkey

    monkey.patch_all()
    import socket

    import gevent
    import gevent.event

    db = _make_db(params, max_connections=10, timeout=20)
    report: dict[str, Any] = {}

    # -- while waiting for a connection
    held, go, _ = _hold_all(db, 10)
    try:
        with gevent.Timeout(0.2):
            db.connect()
        report["timeout_waiting_raised"] = False
    except gevent.Timeout:
        report["timeout_waiting_raised"] = True
    _release(held, go)
    _whole(db, "timeout_waiting", report)

    held, go, _ = _hold_all(db, 10)
    waiter = gevent.spawn(db.connect)
    while db.pool.stats().waiting == 0:
        gevent.sleep(0)  # a cooperative yield until it queued; no timing
    waiter.kill()
    _release(held, go)
    _whole(db, "kill_waiting", report)

    # -- while connecting (a listener that accepts and never greets)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    blackhole = _make_db({**params, "host": "127.0.0.1", "port": listener.getsockname()[1]},
                         max_connections=10, timeout=20, connect_timeout=20)
    try:
        with gevent.Timeout(0.2):
            blackhole.connect()
        report["timeout_connecting_raised"] = False
    except gevent.Timeout:
        report["timeout_connecting_raised"] = True
    s = blackhole.pool.stats()
    report["timeout_connecting"] = {"size": s.size, "opening": s.opening, "in_use": s.in_use}
    sockets = [listener.accept()[0]]  # the first attempt's
    connecting = gevent.spawn(blackhole.connect)
    sockets.append(listener.accept()[0])  # the second connect is in progress
    gevent.sleep(0)  # it is blocked reading the server's greeting now
    connecting.kill()
    s = blackhole.pool.stats()
    report["kill_connecting"] = {"size": s.size, "opening": s.opening, "in_use": s.in_use}
    blackhole.close_pool()
    for sock in sockets:
        sock.close()
    listener.close()

    # -- mid-query
    retired = db.pool.stats().counters.retired_broken
    try:
        with gevent.Timeout(0.2), db.connection_context():
            db.execute_sql("SELECT SLEEP(2)")
    except gevent.Timeout:
        pass
    _whole(db, "timeout_query", report)

    in_query = gevent.event.Event()

    def slow() -> None:
        with db.connection_context():
            in_query.set()
            db.execute_sql("SELECT SLEEP(2)")

    g = gevent.spawn(slow)
    in_query.wait(10)
    gevent.sleep(0)  # it is blocked reading the reply now
    g.kill()
    _whole(db, "kill_query", report)
    report["query_connections_retired"] = db.pool.stats().counters.retired_broken - retired

    # -- greenlets that end holding a connection
    def leak() -> None:
        db.execute_sql("SELECT 1").fetchone()  # autoconnect, never closed

    leakers = [gevent.spawn(leak) for _ in range(3)]
    gevent.joinall(leakers)
    del leakers  # gevent frees a greenlet's locals when the greenlet is collected
    import gc

    gc.collect()
    _whole(db, "greenlets_ended_holding", report)
    report["reclaimed_abandoned"] = db.pool.stats().counters.reclaimed_abandoned
    db.close_pool()
    report["size_after_close"] = db.pool.stats().size
    return report


def preload(params: dict[str, Any]) -> dict[str, Any]:
    db = _make_db(params, max_connections=4, timeout=20)
    with db.connection_context():  # a query in the "master": maintainer thread started
        db.execute_sql("SELECT 1").fetchone()
    read, write = os.pipe()
    pid = os.fork()
    if pid:  # the "master"
        os.close(write)
        with os.fdopen(read) as pipe:
            line = pipe.read()
        _, status = os.waitpid(pid, 0)
        db.close_pool()
        result = json.loads(line or "{}")
        result["child_exit"] = status
        return result
    os.close(read)
    try:
        result = _preload_worker(db)
    except BaseException as exc:  # report, do not hang the parent
        result = {"crash": repr(exc)}
    with os.fdopen(write, "w") as pipe:
        pipe.write(json.dumps(result))
    os._exit(0)


def _preload_worker(db: Any) -> dict[str, Any]:
    from gevent import monkey

    monkey.patch_all()  # what gunicorn's gevent worker does after the fork
    import gevent
    import gevent.local

    results: dict[int, Any] = {}

    def request(i: int) -> None:
        try:
            with db.connection_context():
                db.execute_sql("SET @me = %s", (i,))
                gevent.sleep(0.001)  # let the other greenlets run in between
                results[i] = db.execute_sql("SELECT @me").fetchone()[0]
        except BaseException as exc:
            results[i] = repr(exc)

    for _ in range(3):
        greenlets = [gevent.spawn(request, i) for i in range(20)]
        gevent.joinall(greenlets, timeout=30)
    mismatched = {i: v for i, v in results.items() if v != i}
    stats = db.pool.stats()
    report = {
        "served": len(results), "own_value": sum(1 for i, v in results.items() if v == i),
        "mismatched": {str(k): str(v) for k, v in mismatched.items()},
        "in_use": stats.in_use, "size": stats.size,
        "greenlet_local_state": isinstance(db._holders, gevent.local.local),
        "maintainer_running": db.pool.maintainer.running,
    }
    db.close_pool()
    report["size_after_close"] = db.pool.stats().size
    return report


def used_before_patch(params: dict[str, Any]) -> dict[str, Any]:
    """Used (maintainer thread running) before patching, in the same process: the first
    checkout after patch_all() must fail with what to change, not deadlock or share."""
    db = _make_db(params, max_connections=2, timeout=5)
    with db.connection_context():
        db.execute_sql("SELECT 1").fetchone()
    from gevent import monkey

    monkey.patch_all()
    try:
        db.connect()
        return {"error": None}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    mode, raw = sys.argv[1], sys.argv[2]
    scenarios = {"interrupts": interrupts, "preload": preload,
                 "used_before_patch": used_before_patch}
    out = scenarios[mode](json.loads(raw))
    print(json.dumps(out))
