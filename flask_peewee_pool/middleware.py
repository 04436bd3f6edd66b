"""``flask_peewee_pool.middleware.PoolMiddleware``: the WSGI adapter (:mod:`.adapters.wsgi`)."""

from .adapters.wsgi import (
    CHECKOUT_MODES,
    RETRY_AFTER,
    PoolMiddleware,
    current_connection,
    release_connection,
)

__all__ = ["CHECKOUT_MODES", "RETRY_AFTER", "PoolMiddleware", "current_connection",
           "release_connection"]
