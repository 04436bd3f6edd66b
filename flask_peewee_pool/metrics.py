"""Prometheus metrics for a pool (implemented in :mod:`.ops.metrics`).

::

    from flask_peewee_pool.metrics import instrument

    instrument(database)                  # a pooled peewee database, or a ConnectionPool
"""

from .ops.metrics import DEFAULT_BUCKETS, DEFAULT_INTERVAL, PoolMetrics, instrument

__all__ = ["DEFAULT_BUCKETS", "DEFAULT_INTERVAL", "PoolMetrics", "instrument"]
