"""A server process of the cross-process drain test (``python -m tests.drain.serve_child``).

Builds :mod:`tests.drain.drain_app`, runs light load on two threads (each request reads
``CONNECTION_ID()``, some hold their connection a little), writes its snapshot, prints
``ready <pid>`` and serves until a line arrives on stdin; then prints ``done <requests>
<errors> <ids>`` (the connection ids of its last requests, comma-separated) and exits.
"""

from __future__ import annotations

import sys
import threading
from collections import deque

from flask_peewee_pool.ops import snapshots
from tests.drain.drain_app import create_app


def main() -> int:
    app = create_app()
    state = app.extensions["peewee_pool"]
    db = state.database
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"ok": 0, "errors": 0}
    recent: deque[int] = deque(maxlen=20)
    first_error: list[str] = []

    def load(hold: float) -> None:
        while not stop.is_set():
            try:
                with db.connection_context():
                    (cid,) = db.execute_sql("SELECT CONNECTION_ID()").fetchone()
                    stop.wait(hold)  # a request doing some work while holding it
            except Exception as exc:
                with lock:
                    counts["errors"] += 1
                    first_error[:] = first_error or [f"{type(exc).__name__}: {exc}"]
            else:
                with lock:
                    counts["ok"] += 1
                    recent.append(int(cid))
            stop.wait(0.01)  # light load: pacing, not synchronisation

    threads = [threading.Thread(target=load, args=(h,), daemon=True) for h in (0.0, 0.05)]
    for t in threads:
        t.start()
    with db.connection_context():
        db.execute_sql("SELECT 1").fetchone()  # the maintainer runs from here on
    snapshots.write_snapshot(state)
    print(f"ready {__import__('os').getpid()}", flush=True)
    sys.stdin.readline()
    with lock:  # the ids of requests made after the drain finished
        recent.clear()
    while len(recent) < 10 and not stop.wait(0.02):
        pass
    stop.set()
    for t in threads:
        t.join(10)
    ids = ",".join(str(i) for i in sorted(set(recent)))
    print(f"done {counts['ok']} {counts['errors']} {ids or '-'}", flush=True)
    if first_error:
        print(first_error[0], file=sys.stderr)
    db.close_pool()
    return 0


if __name__ == "__main__":
    sys.exit(main())
