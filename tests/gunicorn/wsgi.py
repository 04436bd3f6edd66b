"""What the gunicorn tests serve: the example app, unchanged, plus one test-only route and,
with ``PEEWEE_POOL_METRICS`` on, ``/metrics`` mounted as docs/operations.md shows.

``GET /_fpp/work?ms=N`` runs one query that holds the request's connection N ms
(``SELECT CONNECTION_ID(), SLEEP(N/1000)``) and answers which process served it, which
server-side connection it used, and whether that process's own pool and maintainer run.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from flask import Blueprint, request

from example_app import create_app, pool

app = create_app()
bp = Blueprint("fpp_test", __name__, url_prefix="/_fpp")


@bp.get("/work")
def work() -> dict[str, Any]:
    ms = request.args.get("ms", default=0, type=int)
    row = pool.database.execute_sql("SELECT CONNECTION_ID(), SLEEP(%s)",
                                    (ms / 1000.0,)).fetchone()
    real = pool.database.pool  # the ConnectionPool behind the proxy
    return {
        "pid": os.getpid(),
        "connection_id": int(row[0]),
        "pool_pid": real._pid,  # the process that (re)built the pool's state
        "maintainer_running": real.maintainer.running,
        "threads": sorted(t.name for t in threading.enumerate()),
    }


app.register_blueprint(bp)

if os.environ.get("PEEWEE_POOL_METRICS", "").lower() in ("1", "true", "yes", "on"):
    # The snippet of docs/operations.md, "Multiprocess mode (gunicorn)".
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.multiprocess import MultiProcessCollector
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    def metrics_app() -> Any:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # reads every process's files at each scrape
            return make_wsgi_app(registry)
        return make_wsgi_app()  # one process: the default registry

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/metrics": metrics_app()})
