"""A second worker process of the example app for the pool page tests.

``python -m tests.e2e.page_child`` with the example app's environment (``PEEWEE_POOL_*``):
serves ``FPP_CHILD_REQUESTS`` requests through the test client, writes its snapshot, prints
``ready <pid>`` and waits for a line (or EOF) on stdin.
"""

from __future__ import annotations

import os
import sys

from example_app import create_app
from flask_peewee_pool import snapshots


def main() -> int:
    app = create_app()
    client = app.test_client()
    for i in range(int(os.environ.get("FPP_CHILD_REQUESTS", "5"))):
        assert client.post("/api/notes", json={"text": f"child {i}"}).status_code == 201
    snapshots.write_snapshot(app.extensions["peewee_pool"])
    print(f"ready {os.getpid()}", flush=True)
    sys.stdin.readline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
