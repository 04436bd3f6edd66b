"""The app of the cross-process drain test, for ``flask --app tests.drain.drain_app``.

Database URL and stats directory come from the environment (``FPP_DRAIN_URL``,
``FPP_DRAIN_STATS``): never argv, which other users can read in ``ps``.
"""

from __future__ import annotations

import os

from flask import Flask

from flask_peewee_pool import PeeweePool


def create_app() -> Flask:
    app = Flask("drain_app")
    app.config.update(
        PEEWEE_POOL_DATABASE=os.environ["FPP_DRAIN_URL"],
        PEEWEE_POOL_STATS_DIR=os.environ["FPP_DRAIN_STATS"],
        PEEWEE_POOL_STATS_INTERVAL=float(os.environ.get("FPP_DRAIN_INTERVAL", "1")),
        PEEWEE_POOL_MAX_CONNECTIONS=2,
        PEEWEE_POOL_MAX_LIFETIME=None,
        PEEWEE_POOL_IDLE_TIMEOUT=None,
        PEEWEE_POOL_TIMEOUT=20,
    )
    PeeweePool(app)
    return app
