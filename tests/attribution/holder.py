"""A process holding pooled connections, for the fleet-view tests.

Run as ``python -m tests.attribution.holder COUNT [--in-transaction N] [--flask NAME]``
with the database URL in ``FPP_HOLDER_URL`` (the environment, not argv, which other users
could read in ``ps``). Checks out COUNT connections of one pool, runs a query on each
(and leaves a transaction open on the first N), prints ``ready <pid>`` and waits for a
line (or EOF) on stdin; then returns them, closes the pool and exits 0.

``--flask NAME`` builds the pool through the Flask extension on an app whose import name
is NAME (the extension's default application name); otherwise through
:func:`flask_peewee_pool.connect`, where the URL may carry ``application_name=``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any


def _database(url: str, count: int, flask_name: str | None) -> Any:
    if flask_name is None:
        from flask_peewee_pool import connect

        return connect(url, max_connections=count, keepalive=None, idle_timeout=None)
    from flask import Flask

    from flask_peewee_pool import PeeweePool

    app = Flask(flask_name, instance_path=tempfile.mkdtemp(prefix="fpp-holder-"))
    app.config.update(PEEWEE_POOL_DATABASE=url, PEEWEE_POOL_MAX_CONNECTIONS=count,
                      PEEWEE_POOL_KEEPALIVE=None, PEEWEE_POOL_IDLE_TIMEOUT=None,
                      PEEWEE_POOL_STATS_INTERVAL=3600)
    PeeweePool(app)
    return app.extensions["peewee_pool"].database


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int)
    parser.add_argument("--in-transaction", type=int, default=0)
    parser.add_argument("--flask", default=None)
    args = parser.parse_args()

    database = _database(os.environ["FPP_HOLDER_URL"], args.count, args.flask)
    pool = database.pool
    held = [pool.checkout() for _ in range(args.count)]
    for i, conn in enumerate(held):
        cursor = conn.raw.cursor()
        if i < args.in_transaction:
            # InnoDB lists a transaction (INNODB_TRX) once it has a read view.
            cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT"
                           if database.pool.driver.kind == "mysql" else "BEGIN")
        cursor.execute("SELECT 1")
        cursor.fetchall()
        cursor.close()
    print(f"ready {os.getpid()} {database.application_name}", flush=True)
    sys.stdin.readline()
    for conn in held:
        pool.checkin(conn)
    database.close_pool()
    return 0


if __name__ == "__main__":
    sys.exit(main())
