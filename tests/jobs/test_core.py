"""JobConnections and the Celery hooks, in-process, on SQLite pools (fast)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest

from flask_peewee_pool import PoolClosed, connect
from flask_peewee_pool.jobs import JobConnections


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Any]:
    database = connect(f"sqlite:///{tmp_path / 'a.db'}", max_connections=2)
    yield database
    database.close_pool()


@pytest.fixture
def other_db(tmp_path: Path) -> Iterator[Any]:
    database = connect(f"sqlite:///{tmp_path / 'b.db'}", max_connections=2)
    yield database
    database.close_pool()


def in_use(db: Any) -> int:
    return db.pool.stats().in_use


def test_lazy_job_returns_its_connection(db: Any) -> None:
    jobs = JobConnections(db)
    jobs.start()
    assert in_use(db) == 0  # lazy: nothing until the first query
    db.execute_sql("SELECT 1")
    assert in_use(db) == 1
    assert jobs.finish() == 1
    assert in_use(db) == 0 and db.is_closed()


def test_eager_job_checks_out_before_the_body(db: Any, other_db: Any) -> None:
    jobs = JobConnections(db, other_db, eager=True)
    with jobs.job():
        assert (in_use(db), in_use(other_db)) == (1, 1)
    assert (in_use(db), in_use(other_db)) == (0, 0)


def test_open_transaction_is_rolled_back_and_returned(db: Any) -> None:
    with db.connection_context():
        db.execute_sql("CREATE TABLE t (x INTEGER)")
    jobs = JobConnections(db)
    jobs.start()
    db.atomic().__enter__()  # the job dies inside a transaction: never exited
    db.execute_sql("INSERT INTO t VALUES (1)")
    assert db.in_transaction()
    jobs.finish()
    assert in_use(db) == 0
    with db.connection_context():
        assert db.execute_sql("SELECT COUNT(*) FROM t").fetchone()[0] == 0


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, ValueError])
def test_any_exception_returns_the_connection_and_propagates(db: Any, exc: type) -> None:
    jobs = JobConnections(db)
    raised = exc("boom")
    with pytest.raises(exc) as info, jobs.job():
        db.execute_sql("SELECT 1")
        raise raised
    assert info.value is raised
    assert in_use(db) == 0


def test_a_connection_held_before_the_job_stays_with_its_holder(db: Any) -> None:
    # A task applied eagerly inside a web request: the request's connection is not the
    # task's to return.
    db.connect()
    jobs = JobConnections(db)
    with jobs.job():
        db.execute_sql("SELECT 1")
    assert not db.is_closed() and in_use(db) == 1
    db.close()
    assert in_use(db) == 0


def test_finish_without_start_returns_everything(db: Any) -> None:
    db.connect()
    assert JobConnections(db).finish() == 1
    assert in_use(db) == 0


def test_failed_eager_start_gives_back_what_it_took(db: Any, other_db: Any) -> None:
    other_db.close_pool()
    jobs = JobConnections(db, other_db, eager=True)
    with pytest.raises(PoolClosed):
        jobs.start()
    assert in_use(db) == 0 and db.is_closed()


def test_wrap_and_proxies(db: Any) -> None:
    proxy = peewee.DatabaseProxy()
    jobs = JobConnections(proxy)
    assert jobs.finish() == 0  # not initialised yet: nothing can be held through it
    proxy.initialize(db)

    @jobs.wrap
    def job(x: int) -> int:
        return int(proxy.execute_sql("SELECT ?", (x,)).fetchone()[0])

    assert job(7) == 7
    assert in_use(db) == 0


def test_no_database_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one database"):
        JobConnections()


def test_close_closes_the_pools(db: Any) -> None:
    JobConnections(db).close()
    assert db.pool.stats().closed


# ----------------------------------------------------------------------- Celery, in process


@pytest.fixture
def celery_app(db: Any) -> Any:
    celery = pytest.importorskip("celery")
    from flask_peewee_pool.jobs.celery import init_celery

    app = celery.Celery("fpp_core_tests", broker="memory://", backend="cache+memory://")
    init_celery(app, db, close_on_shutdown=False)
    return app


def test_celery_task_success_and_failure_return_the_connection(celery_app: Any,
                                                              db: Any) -> None:
    @celery_app.task
    def query(fail: bool) -> int:
        value = int(db.execute_sql("SELECT 1").fetchone()[0])
        assert in_use(db) == 1
        if fail:
            raise RuntimeError("task failed")
        return value

    assert query.apply(args=(False,)).get() == 1
    assert in_use(db) == 0
    result = query.apply(args=(True,))
    assert result.failed() and isinstance(result.result, RuntimeError)
    assert in_use(db) == 0


def test_celery_task_applied_in_a_request_leaves_its_connection(celery_app: Any,
                                                               db: Any) -> None:
    @celery_app.task
    def query() -> int:
        return int(db.execute_sql("SELECT 2").fetchone()[0])

    with db.connection_context():  # the "request"
        assert query.apply().get() == 2
        assert not db.is_closed() and in_use(db) == 1
    assert in_use(db) == 0


def test_celery_hooks_ignore_other_apps_tasks(celery_app: Any, db: Any) -> None:
    import celery

    other = celery.Celery("other", broker="memory://", backend="cache+memory://")

    @other.task
    def query() -> int:
        return int(db.execute_sql("SELECT 3").fetchone()[0])

    assert query.apply().get() == 3
    assert in_use(db) == 1  # not ours to return
    db.close()


def test_discard_closes_instead_of_returning(db: Any) -> None:
    jobs = JobConnections(db)
    jobs.start()
    db.execute_sql("SELECT 1")
    assert jobs.finish(discard=True) == 1
    stats = db.pool.stats()  # handed to the maintainer to close: not idle, not in use
    assert stats.in_use == 0 and stats.idle == 0 and stats.counters.checkouts == 1
    with db.connection_context():
        db.execute_sql("SELECT 1")
    assert db.pool.stats().counters.connects == 2  # a new one, not the discarded one


def test_celery_soft_time_limit_discards_the_connection(celery_app: Any, db: Any) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    @celery_app.task
    def cut() -> None:
        db.execute_sql("SELECT 1")
        raise SoftTimeLimitExceeded()

    assert cut.apply().failed()
    stats = db.pool.stats()
    assert stats.in_use == 0 and stats.idle == 0


def test_a_failed_eager_start_keeps_the_outer_holders_connection(db: Any,
                                                                 other_db: Any) -> None:
    # Celery swallows an exception from task_prerun and still sends task_postrun: the
    # finish that follows a failed start must not return what the thread held before.
    db.connect()  # the "request" holds this one
    other_db.close_pool()
    jobs = JobConnections(db, other_db, eager=True)
    with pytest.raises(PoolClosed):
        jobs.start()
    jobs.finish()
    assert not db.is_closed() and in_use(db) == 1
    db.close()
