"""Exceptions raised by the pool.

Every error names the pool it comes from, so a log line from a process with several pools
says which one is in trouble. None of them ever carries a password: pools describe their
database with :func:`flask_peewee_pool.orm.urls.redact` before putting it in a message.
"""

from __future__ import annotations


class PoolError(Exception):
    """Base class of every error this library raises."""


class ConfigError(PoolError, ValueError):
    """A setting has a value the pool cannot use.

    Raised at start-up (pool construction, ``init_app``), never at the first request.
    The message names the setting and what it accepts.
    """

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        self.detail = message
        super().__init__(f"{setting}: {message}")


class PoolTimeout(PoolError):
    """No connection became available within ``timeout`` seconds."""


class PoolExhausted(PoolError):
    """``max_waiting`` threads are already waiting; rejected at once instead of queueing."""


class PoolClosed(PoolError):
    """The pool was closed; it hands out no more connections."""


class ConnectError(PoolError):
    """Opening a new connection failed; the driver's own exception is ``__cause__``."""


class CheckinError(PoolError):
    """A connection was returned twice, or returned to a pool that does not own it."""


class HolderError(PoolError):
    """A connection was used by a thread (greenlet) other than the one that checked it out.

    Raised before anything is sent: one connection, one holder.
    """
