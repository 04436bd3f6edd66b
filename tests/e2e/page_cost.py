"""How much one poll of the pool page costs: ``python -m tests.e2e.page_cost``.

Three other worker processes of the example app (SQLite, each with a snapshot in the stats
directory) and this one; times ``GET /pool/data`` through Flask's test client (no HTTP
server in the way) and checks that polling took no connection.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from example_app import create_app

REPO = Path(__file__).resolve().parents[2]


def main(calls: int = 1000, others: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = {"PEEWEE_POOL_DATABASE": f"sqlite:///{tmp}/notes.db",
                  "PEEWEE_POOL_STATS_DIR": f"{tmp}/stats"}
        env = {**os.environ, "PYTHONPATH": str(REPO), **config}
        children = [subprocess.Popen([sys.executable, "-m", "tests.e2e.page_child"], env=env,
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True) for _ in range(others)]
        try:
            for child in children:
                assert child.stdout is not None and child.stdout.readline().startswith("ready")
            app = create_app(config)
            client = app.test_client()
            client.get("/pool/data")
            started = time.perf_counter()
            for _ in range(calls):
                doc = client.get("/pool/data").get_json()
            elapsed = time.perf_counter() - started
            mine = next(p for p in doc["processes"] if p["this"])
            print(f"/pool/data over {len(doc['processes'])} processes: "
                  f"{elapsed / calls * 1000:.2f} ms per call ({calls} calls); "
                  f"checkouts taken by polling: {mine['checkouts']}")
            app.extensions["peewee_pool"].database.close_pool()
        finally:
            for child in children:
                child.communicate("\n", timeout=30)


if __name__ == "__main__":
    main()
