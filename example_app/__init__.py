"""A small notes service built on the PeeweePool extension.

    flask --app example_app run           # SQLite in the instance folder
    PEEWEE_POOL_DATABASE=mysql://user:password@127.0.0.1/test flask --app example_app run

``/pool`` is a live page of the pool (size by state over the last minutes, checkout wait,
connects and retirements, per worker process); ``/healthz`` a JSON readiness probe.

Every ``PEEWEE_POOL_*`` setting can come from the environment, either under its own name
or with Flask's prefix (``FLASK_PEEWEE_POOL_MAX_CONNECTIONS=10``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import peewee
from flask import Flask, request

from .models import Note, pool
from .poolpage import bp as pool_page
from .views import bp

__all__ = ["Note", "create_app", "pool"]

#: Endpoints that never touch the notes table.
_NEED_NO_TABLES = frozenset({"notes.healthz", "poolpage.page", "poolpage.data", "static"})


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    os.makedirs(app.instance_path, exist_ok=True)
    database = os.path.join(app.instance_path, "example.sqlite3")
    app.config.from_mapping(
        PEEWEE_POOL_DATABASE=f"sqlite:///{database}",
        PEEWEE_POOL_MAX_CONNECTIONS=10,
        # The pool page reads stats only: no connection, even with CHECKOUT=eager; the
        # health check connects itself, so that it can answer 503 JSON when that fails.
        PEEWEE_POOL_EXCLUDED_ENDPOINTS="poolpage.page,poolpage.data,notes.healthz",
    )
    app.config.from_prefixed_env()  # FLASK_PEEWEE_POOL_* (values parsed as JSON)
    app.config.update({k: v for k, v in os.environ.items() if k.startswith("PEEWEE_POOL_")})
    if test_config is not None:
        app.config.update(test_config)

    pool.init_app(app)
    _create_tables(app)
    app.register_blueprint(bp)
    app.register_blueprint(pool_page)
    return app


def _create_tables(app: Flask) -> None:
    """Create the tables over a pool of their own, closed at once.

    Not through the app's pool: under ``gunicorn --preload`` this factory runs in the
    master, whose pool would keep the connection open (until IDLE_TIMEOUT), run its
    maintainer, and appear in ``flask pool-stats`` and in Prometheus sums as one more
    server process. The app's pool stays unused until the first request.
    """
    database = app.extensions["peewee_pool"].database
    once = type(database)(database.database, max_connections=1, **database.connect_params)
    try:
        with once.bind_ctx([Note]), once.connection_context():
            once.create_tables([Note], safe=True)
    except peewee.OperationalError as exc:
        # Start anyway, so /healthz and `flask pool-check` report the outage in one line;
        # the first request after the database answers creates the table.
        app.logger.warning("tables not created at start-up: %s", exc)
        pending = [True]

        @app.before_request
        def create_tables_once() -> None:
            # Not for the probe and the pool page: they must answer during the outage.
            if pending and request.endpoint not in _NEED_NO_TABLES:
                pool.database.create_tables([Note], safe=True)
                pending.clear()
    finally:
        once.close_pool()


def __getattr__(name: str) -> Any:
    # ``example_app:app`` for WSGI servers (and ``flask --app example_app``), built on first
    # use rather than at import, so importing create_app touches no database.
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
