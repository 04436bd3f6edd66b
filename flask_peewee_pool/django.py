"""``flask_peewee_pool.django``: the Django integration (implemented in
:mod:`.adapters.django_ext`; see there for settings and the request lifecycle)."""

from .adapters.django_ext import (
    SETTING,
    DjangoPoolState,
    Model,
    PeeweePoolConfig,
    PoolImproperlyConfigured,
    PoolMiddleware,
    close,
    database,
    drain,
    get_state,
)

__all__ = ["SETTING", "DjangoPoolState", "Model", "PeeweePoolConfig", "PoolImproperlyConfigured",
           "PoolMiddleware", "close", "database", "drain", "get_state"]
