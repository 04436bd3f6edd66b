"""A second process for the CLI tests (run as ``python -m tests.cli.snapshot_child``).

Builds an app with a pool for the URL in ``FPP_CHILD_URL`` (the environment, not argv,
which other users could read in ``ps``), runs queries, writes its snapshot into the given
directory, prints ``ready <pid> <snapshot path>`` and waits for a line (or EOF) on stdin,
then exits normally. With ``--fork`` it forks after its queries: the child runs its own
queries, waits until its maintainer's hook has written the child's snapshot, and prints
``child <pid> <snapshot path> <hook attached>``; both processes then wait on stdin.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from flask_peewee_pool.ops import snapshots
from tests.cli.conftest import build_app


def run_queries(database: object, count: int) -> None:
    for _ in range(count):
        database.connect()  # type: ignore[attr-defined]
        database.execute_sql("SELECT 1").fetchone()  # type: ignore[attr-defined]
        database.close()  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stats_dir")
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--fork", action="store_true")
    args = parser.parse_args()

    _, state = build_app(os.environ["FPP_CHILD_URL"], Path(args.stats_dir), interval=0.1,
                         name="cli_app")
    database = state.database
    run_queries(database, args.queries)
    path = snapshots.write_snapshot(state)

    child = 0
    if args.fork:
        child = os.fork()
        if child == 0:
            pool = database.pool
            writer = snapshots._writers.get(pool)
            attached = writer is not None and writer in pool.maintainer.hooks
            run_queries(database, args.queries + 1)  # starts the child's maintainer
            path = os.path.join(args.stats_dir, snapshots.snapshot_filename(os.getpid(),
                                                                            pool.name))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # bounded: the hook writes every 0.1 s
                snap = snapshots._load(path)
                if snap and snap["stats"]["counters"]["checkouts"] == args.queries + 1:
                    break
                time.sleep(0.02)
            print(f"child {os.getpid()} {path} {attached}", flush=True)
            sys.stdin.readline()
            database.close_pool()
            return 0

    print(f"ready {os.getpid()} {path}", flush=True)
    sys.stdin.readline()
    if child:
        os.waitpid(child, 0)
    database.close_pool()
    return 0


if __name__ == "__main__":
    sys.exit(main())
