"""A small notes service built on the PeeweePool extension.

    flask --app example_app run           # SQLite in the instance folder
    PEEWEE_POOL_DATABASE=mysql://user:password@127.0.0.1/test flask --app example_app run

Every ``PEEWEE_POOL_*`` setting can come from the environment, either under its own name
or with Flask's prefix (``FLASK_PEEWEE_POOL_MAX_CONNECTIONS=10``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .models import Note, pool
from .views import bp

__all__ = ["Note", "create_app", "pool"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    os.makedirs(app.instance_path, exist_ok=True)
    database = os.path.join(app.instance_path, "example.sqlite3")
    app.config.from_mapping(
        PEEWEE_POOL_DATABASE=f"sqlite:///{database}",
        PEEWEE_POOL_MAX_CONNECTIONS=10,
    )
    app.config.from_prefixed_env()  # FLASK_PEEWEE_POOL_* (values parsed as JSON)
    app.config.update({k: v for k, v in os.environ.items() if k.startswith("PEEWEE_POOL_")})
    if test_config is not None:
        app.config.update(test_config)

    pool.init_app(app)
    with pool.database.connection_context():
        pool.database.create_tables([Note], safe=True)
    app.register_blueprint(bp)
    return app


def __getattr__(name: str) -> Any:
    # ``example_app:app`` for WSGI servers (and ``flask --app example_app``), built on first
    # use rather than at import, so importing create_app touches no database.
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
