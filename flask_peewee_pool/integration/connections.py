"""A request's connection, framework-neutral: which one the thread holds, and giving it back.

Every adapter (WSGI middleware, Flask, Django) ends a request the same way: roll back what
the request left open, then return the connection, unless it belongs to an enclosing scope
(a test that opened a transaction, then called the application in-process).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("flask_peewee_pool")

CHECKOUT_MODES = ("lazy", "eager")

#: Seconds a client is told to wait (``Retry-After``) when no connection could be had.
RETRY_AFTER = 1

def current_connection(database: Any) -> Any:
    """The DB-API connection the calling thread holds from ``database``, or ``None``."""
    if database.is_closed():
        return None
    return database.connection()  # open already: returns it, connects nothing


def release_connection(database: Any, keep: Any = None) -> bool:
    """Give the calling thread's connection back to the pool, whatever state it is in.

    A transaction left open (``db.atomic()`` never exited, a bare ``db.begin()``) is rolled
    back first, so the next borrower never sees uncommitted rows. If that fails the
    connection is discarded instead of returned. ``keep`` is a connection that belongs to
    an outer scope (see :func:`current_connection`): it is left untouched. Returns True if a
    connection was released. Never raises: this runs in teardown code.
    """
    if database.is_closed():
        return False
    if keep is not None and database.connection() is keep:
        return False
    try:
        if database.in_transaction():
            database.rollback()
            # peewee's close() refuses while its transaction stack is not empty.
            while database.in_transaction():
                database.pop_transaction()
        database.close()
    except Exception:
        logger.warning("could not return a connection cleanly; discarding it", exc_info=True)
        _discard(database)
    return True


def _discard(database: Any) -> None:
    manual_close = getattr(database, "manual_close", None)
    try:
        if manual_close is not None:
            manual_close()
        else:
            while database.in_transaction():
                database.pop_transaction()
            database.close()
    except Exception:
        logger.exception("could not discard a connection")
