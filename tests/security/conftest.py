"""Security tests: the pool account's password never leaves the process it was given to.

The pool account's password (:data:`tests.dbutil.POOL_PASSWORD`, ``fpp-S3cr3t-pw-7Q``) is
distinctive on purpose, and so is :data:`WRONG_PASSWORD` (used for authentication
failures): a plain substring search proves either absent from whatever is checked: log
records (message, arguments, formatted tracebacks), exception messages and their whole
chain, ``repr()``/``str()`` of every object, stats snapshots and their file names, and CLI
output.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flask_peewee_pool import PooledMySQLDatabase
from tests import dbutil

SECRET = dbutil.POOL_PASSWORD
#: A wrong password, distinctive too: it must not appear either when authentication fails.
WRONG_PASSWORD = "fpp-Wr0ng-pw-ZZ9x"
SECRETS = (SECRET, WRONG_PASSWORD)


def assert_clean(*texts: Any, where: str = "") -> None:
    """No secret (nor its percent-encoded form) in any of ``texts``."""
    for text in texts:
        text = text if isinstance(text, str) else repr(text)
        for secret in SECRETS:
            assert secret not in text, f"password found in {where or 'text'}: {text[:500]}"
            assert secret.replace("-", "%2D") not in text


def exception_texts(exc: BaseException) -> list[str]:
    """str/repr/args of ``exc`` and of every exception chained to it, plus the formatted
    traceback (what a log handler or an error page would show)."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        texts += [str(e), repr(e), repr(e.args)]
        texts += [str(getattr(e, attr, "")) for attr in ("traceback", "original_exception")]
        todo += [e.__cause__, e.__context__]
    texts.append("".join(traceback.format_exception(exc)))
    return texts


def assert_exception_clean(exc: BaseException) -> None:
    assert_clean(*exception_texts(exc), where=f"{type(exc).__name__} chain")


def assert_logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert_clean(record.getMessage(), repr(record.args), where=f"log record {record.name}")
        if record.exc_info and record.exc_info[1] is not None:
            assert_exception_clean(record.exc_info[1])
    assert_clean(caplog.text, where="captured log text")


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG; asserts at teardown that no record holds a password."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    assert_logs_clean(caplog)


@pytest.fixture
def make_mysql(mysql_pool_user: Any) -> Iterator[Callable[..., PooledMySQLDatabase]]:
    """PooledMySQLDatabase as the pool account (password in the kwargs); closed afterwards."""
    made: list[PooledMySQLDatabase] = []

    def make(**kwargs: Any) -> PooledMySQLDatabase:
        params = mysql_pool_user.as_dict()
        database = params.pop("database")
        params.setdefault("connect_timeout", 3)
        params.update(kwargs)
        db = PooledMySQLDatabase(database, **params)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close_pool()
