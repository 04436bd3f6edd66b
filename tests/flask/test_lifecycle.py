"""Every request, app context and CLI command gives its connection back, whatever happened.

SQLite here; the same cases against MariaDB are in test_mysql.py. Tests taking the ``app`` /
``client`` fixtures run inside pytest-flask's pushed test_request_context, as user tests
do; the others (``make_harness``) run with no context at all, as a server thread does.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee
import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_peewee_pool import PeeweePool, PooledSqliteDatabase
from tests.flask.helpers import Harness, run_in_thread, sqlite_url


@pytest.fixture(params=["lazy", "eager"])
def checkout(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make_harness(make_harness: Callable[..., Harness], checkout: str) -> Callable[..., Harness]:
    """Every test here runs with both checkout modes."""

    def make(**config: object) -> Harness:
        config.setdefault("PEEWEE_POOL_CHECKOUT", checkout)
        return make_harness(**config)

    return make


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(PEEWEE_POOL_EXCLUDED_ENDPOINTS="excluded")


def test_plain_request(harness: Harness, client: FlaskClient) -> None:
    assert client.post("/insert").status_code == 200
    assert client.get("/count").json == {"count": 1}
    assert harness.in_use() == 0


def test_exception_in_view(harness: Harness, client: FlaskClient) -> None:
    assert client.get("/error").status_code == 500
    assert harness.in_use() == 0


def test_exception_propagated_in_testing_mode(harness: Harness, client: FlaskClient) -> None:
    harness.app.testing = True  # exceptions reach the caller: teardown must still run
    with pytest.raises(RuntimeError, match="view failed"):
        client.get("/error")
    assert harness.in_use() == 0


def test_abort(harness: Harness, client: FlaskClient) -> None:
    assert client.get("/abort").status_code == 404
    assert harness.in_use() == 0


def test_exception_inside_atomic_rolls_back(harness: Harness, client: FlaskClient) -> None:
    assert client.post("/atomic-error").status_code == 500
    assert harness.in_use() == 0
    assert client.get("/count").json == {"count": 0}


@pytest.mark.parametrize("view", ["/atomic-open", "/begin-open"])
def test_unbalanced_transaction_is_rolled_back(harness: Harness, client: FlaskClient,
                                               view: str) -> None:
    assert client.post(view).status_code == 200
    assert harness.in_use() == 0
    # The same (warm, LIFO) connection serves the next request: it must not see the row.
    assert client.get("/count").json == {"count": 0}
    assert harness.count_rows() == 0
    assert harness.in_use() == 0


def test_stream_without_context_holds_until_the_body_ends(
        harness: Harness, client: FlaskClient) -> None:
    response = client.get("/stream")
    body = response.get_data(as_text=True)
    # The generator ran after the view returned and both contexts were gone; it still
    # had its connection while producing the last chunk, and gave it back afterwards.
    assert body == "rows=0;in_use=1;"
    assert harness.in_use() == 0
    response.close()
    assert harness.in_use() == 0


def test_stream_with_context_holds_until_the_body_ends(
        harness: Harness, client: FlaskClient) -> None:
    response = client.get("/stream-context")
    assert harness.in_use() == 1  # the view's connection waits for the body
    assert response.get_data(as_text=True) == "rows=0;in_use=1;"
    assert harness.in_use() == 0


@pytest.mark.parametrize("view", ["/stream", "/stream-context"])
def test_stream_closed_early_releases(harness: Harness, client: FlaskClient, view: str) -> None:
    response = client.get(view)
    chunks = iter(response.response)
    assert next(chunks) == b"rows=0;"
    assert harness.in_use() == 1
    response.close()  # the client went away mid-stream
    assert harness.in_use() == 0


@pytest.mark.parametrize("view", ["/stream", "/stream-context"])
def test_abandoned_stream_is_released_by_the_next_request(
        harness: Harness, client: FlaskClient, view: str) -> None:
    client.get(view)  # neither read nor closed, as tests often do
    assert client.get("/count").json == {"count": 0}
    assert harness.in_use() == 0


def test_excluded_endpoint_never_checks_out(harness: Harness, client: FlaskClient) -> None:
    before = harness.checkouts()
    assert client.get("/excluded").status_code == 200
    assert client.get("/no-such-page").status_code == 404
    assert harness.checkouts() == before
    assert harness.in_use() == 0


def test_static_never_checks_out(make_harness: Callable[..., Harness], tmp_path: object
                                 ) -> None:
    static = tmp_path / "static"  # type: ignore[operator]
    static.mkdir()
    (static / "hello.txt").write_text("hi")
    h = make_harness(static_folder=str(static))
    before = h.checkouts()
    with h.app.test_client() as client:
        response = client.get("/static/hello.txt")
        assert response.data == b"hi"
        response.close()
    assert h.checkouts() == before
    assert h.in_use() == 0


def test_view_without_query(harness: Harness, client: FlaskClient, checkout: str) -> None:
    before = harness.checkouts()
    assert client.get("/noop").status_code == 200
    # lazy: a view that does not query never borrows; eager: it borrowed before running.
    assert harness.checkouts() - before == (1 if checkout == "eager" else 0)
    assert harness.in_use() == 0


def test_eager_checkout_pings_an_idle_connection(make_harness: Callable[..., Harness],
                                                 checkout: str) -> None:
    h = make_harness(PEEWEE_POOL_PING_AFTER=0)
    client = h.app.test_client()
    before = h.pool.stats(h.app).counters.pings
    client.get("/noop")
    client.get("/noop")
    pings = h.pool.stats(h.app).counters.pings - before
    # ping_after=0: every checkout of an idle connection checks it first (none if lazy).
    assert pings == (2 if checkout == "eager" else 0)
    assert h.in_use() == 0


def test_nested_app_contexts(make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    db, Note = h.db, h.Note
    with h.app.app_context():
        with db.atomic():
            Note.create(text="outer")
            with h.app.app_context():
                assert Note.select().count() == 1  # the outer connection, same thread
            # The inner context did not take it away, nor roll the transaction back.
            assert db.in_transaction()
            assert h.in_use() == 1
            Note.create(text="still outer")
        with h.app.app_context():
            pass
        assert Note.select().count() == 2
        assert h.in_use() == 1
    assert h.in_use() == 0
    with h.app.app_context():
        with h.app.app_context():
            assert Note.select().count() == 2  # opened by the inner context...
        assert h.in_use() == 0  # ...and returned by it
    assert h.in_use() == 0


def test_request_inside_a_test_transaction(make_harness: Callable[..., Harness]) -> None:
    """The per-test-transaction pattern: requests use the test's connection, leave it be."""
    h = make_harness()
    client = h.app.test_client()
    with h.app.app_context(), h.db.atomic() as transaction:
        h.Note.create(text="fixture row")
        assert client.get("/count").json == {"count": 1}
        assert client.post("/insert").status_code == 200
        assert client.get("/count").json == {"count": 2}
        assert h.db.in_transaction()
        transaction.rollback()
    assert h.in_use() == 0
    assert h.count_rows() == 0


def test_request_context_without_dispatch(make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    with h.app.test_request_context("/"):
        h.Note.create(text="x")
        assert h.in_use() == 1
    assert h.in_use() == 0


@pytest.mark.parametrize("fail", [False, True])
def test_cli_command(make_harness: Callable[..., Harness], fail: bool) -> None:
    h = make_harness()
    result = h.app.test_cli_runner().invoke(args=["touch-db", *(["--fail"] if fail else [])])
    assert "rows=0 in_use=1" in result.output
    assert result.exit_code == (1 if fail else 0)
    assert h.in_use() == 0


def test_threads_each_return_their_own(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(PEEWEE_POOL_MAX_CONNECTIONS=2)
    thread, out = run_in_thread(lambda: h.app.test_client().get("/hold").status_code)
    assert h.held.wait(10)
    assert h.app.test_client().get("/count").json == {"count": 0}
    assert h.in_use() == 1  # only /hold's
    h.release.set()
    thread.join(10)
    assert out == [200]
    assert h.in_use() == 0


def test_several_apps_get_separate_pools(make_harness: Callable[..., Harness],
                                         tmp_path: object) -> None:
    one = make_harness(PEEWEE_POOL_DATABASE=sqlite_url(f"{tmp_path}/one.db"))
    two = make_harness(PEEWEE_POOL_DATABASE=sqlite_url(f"{tmp_path}/two.db"))
    assert one.db is not two.db and one.db.pool is not two.db.pool
    one.app.test_client().post("/insert")
    assert two.app.test_client().get("/count").json == {"count": 0}
    assert one.app.test_client().get("/count").json == {"count": 1}
    assert one.pool.stats(one.app).counters.checkouts >= 2
    assert two.pool.stats(two.app).counters.checkouts >= 1
    assert one.pool.stats().name == one.app.import_name
    assert one.in_use() == two.in_use() == 0


def test_one_extension_on_two_apps(tmp_path: object, checkout: str) -> None:
    """A factory run twice (tests): each app has its own pool; models follow the newest."""
    pool = PeeweePool()

    class Item(pool.Model):
        name = peewee.TextField()

    apps = []
    for name in ("first", "second"):
        app = Flask(name)
        app.config.update(PEEWEE_POOL_DATABASE=sqlite_url(f"{tmp_path}/{name}.db"),
                          PEEWEE_POOL_STATS_DIR=str(tmp_path), PEEWEE_POOL_CHECKOUT=checkout)
        pool.init_app(app)
        app.add_url_rule("/", "count", lambda: {"count": Item.select().count()})
        apps.append(app)
    first, second = (pool.get_state(app) for app in apps)
    try:
        assert first.database is not second.database
        assert pool.database.obj is second.database
        with pool.database.connection_context():
            pool.database.create_tables([Item])
        assert apps[1].test_client().get("/").json == {"count": 0}
        assert pool.stats(apps[1]).in_use == 0
        with apps[0].app_context():
            assert pool.stats() is not None and pool.get_state() is first
        with pytest.raises(RuntimeError, match="already registered"):
            pool.init_app(apps[0])
    finally:
        first.database.close_pool()
        second.database.close_pool()


def test_factory_pattern_proxy(tmp_path: object, checkout: str) -> None:
    pool = PeeweePool()

    class Item(pool.Model):
        name = peewee.TextField()

    assert isinstance(pool.database, peewee.DatabaseProxy)
    assert Item._meta.database is pool.database
    with pytest.raises(AttributeError, match="uninitialized"):
        Item.select().count()
    with pytest.raises(RuntimeError, match="init_app"):
        pool.stats()
    app = Flask(__name__)
    app.config.update(PEEWEE_POOL_DATABASE=sqlite_url(f"{tmp_path}/f.db"),
                      PEEWEE_POOL_STATS_DIR=str(tmp_path), PEEWEE_POOL_CHECKOUT=checkout)
    pool.init_app(app)
    try:
        assert isinstance(pool.database.obj, PooledSqliteDatabase)
        with app.app_context():
            pool.database.create_tables([Item])
            Item.create(name="a")
            with pool.database.atomic():
                Item.create(name="b")
            assert Item.select().count() == 2
        assert pool.stats().in_use == 0
    finally:
        pool.get_state(app).database.close_pool()
