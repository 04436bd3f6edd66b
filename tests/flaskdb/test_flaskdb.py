"""FlaskDB used the way peewee's documentation uses ``playhouse.flask_utils.FlaskDB``:
each pattern works unchanged and returns every connection (pool in_use 0 after each
request)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
from flask import Flask, g
from flask.sessions import SecureCookieSessionInterface
from playhouse import flask_utils as playhouse_flask_utils

from flask_peewee_pool import ConfigError, PooledMySQLDatabase, PooledSqliteDatabase
from flask_peewee_pool.flask_utils import AppDatabaseProxy, FlaskDB, get_object_or_404
from tests.flaskdb.helpers import (
    add_views,
    checkouts,
    create_table,
    in_use,
    make_note_model,
    state,
)

URLS = ["/count", "/insert", "/noop", "/error", "/abort", "/atomic-open", "/stream"]


def exercise(app: Flask) -> None:
    """Every request shape; the pool has nothing in use after each."""
    client = app.test_client()
    rows = client.get("/count").json["count"]
    expected = {"/error": 500, "/abort": 404}
    for url in URLS:
        method = client.post if url in ("/insert", "/atomic-open") else client.get
        response = method(url)
        assert response.status_code == expected.get(url, 200), url
        response.close()
        assert in_use(app) == 0, url
    assert client.get("/count").json == {"count": rows + 1}  # /atomic-open rolled back


# ------------------------------------------------------------------------ the patterns


def test_module_level_with_url(new_app: Callable[..., Flask],
                               sqlite_url: Callable[[str], str]) -> None:
    """``db = FlaskDB(app, 'sqlite:///...')`` then ``class Note(db.Model)``."""
    app = new_app()
    db = FlaskDB(app, sqlite_url("module"))
    Note = make_note_model(db.Model)
    add_views(app, Note)
    create_table(app, Note)

    assert isinstance(db.database, AppDatabaseProxy)
    assert isinstance(db.database.obj, PooledSqliteDatabase)
    assert Note._meta.database is db.database
    exercise(app)
    assert checkouts(app) >= len(URLS)


@pytest.mark.parametrize("key", ["DATABASE", "DATABASE_URL", "PEEWEE_POOL_DATABASE"])
def test_database_from_config(new_app: Callable[..., Flask], sqlite_url: Callable[[str], str],
                              key: str) -> None:
    """``DATABASE = 'sqlite:///...'`` in the app's config, then ``FlaskDB(app)``."""
    app = new_app(**{key: sqlite_url("config")})
    db = FlaskDB(app)
    Note = make_note_model(db.Model)
    add_views(app, Note)
    create_table(app, Note)
    exercise(app)
    assert state(app).database.database.endswith("config.db")


@pytest.mark.parametrize("engine", [
    "playhouse.pool.PooledSqliteDatabase",
    "peewee.SqliteDatabase",
    "SqliteDatabase",
    "flask_peewee_pool.PooledSqliteDatabase",
    PooledSqliteDatabase,
])
def test_database_dict(new_app: Callable[..., Flask], tmp_path: Path, engine: Any) -> None:
    """``app.config['DATABASE'] = {'name': ..., 'engine': ..., **arguments}``."""
    app = new_app(DATABASE={
        "name": str(tmp_path / "dict.db"),
        "engine": engine,
        "max_connections": 3,
        "stale_timeout": 60,
        "timeout": 0,  # playhouse.pool: wait forever
        "pragmas": {"journal_mode": "wal"},
    })
    db = FlaskDB(app)
    Note = make_note_model(db.Model)
    add_views(app, Note)
    create_table(app, Note)
    database = state(app).database
    assert type(database) is PooledSqliteDatabase
    assert (database.pool_options.max_connections, database.pool_options.max_lifetime,
            database.pool_options.timeout) == (3, 60, None)
    assert state(app).settings["database"] == f"sqlite:///{tmp_path / 'dict.db'}"
    exercise(app)
    with app.app_context():
        assert db.database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_mysql_dict_maps_to_our_class(new_app: Callable[..., Flask]) -> None:
    """playhouse's MySQL engine becomes ours; nothing connects at init_app."""
    app = new_app(DATABASE={
        "name": "app", "engine": "playhouse.pool.PooledMySQLDatabase",
        "user": "web", "password": "s3cret-pw", "host": "127.0.0.1", "port": 1,
        "max_connections": 8, "stale_timeout": 300,
    })
    FlaskDB(app)
    database = state(app).database
    assert type(database) is PooledMySQLDatabase
    assert database.pool_options.max_connections == 8
    assert database.pool_options.max_lifetime == 300
    assert database.connect_params["password"] == "s3cret-pw"
    assert state(app).settings["database"] == "mysql://web:***@127.0.0.1:1/app"
    assert "s3cret-pw" not in repr(state(app).settings)


def test_app_factory_two_apps(new_app: Callable[..., Flask],
                              sqlite_url: Callable[[str], str]) -> None:
    """``db = FlaskDB()`` at import, ``db.init_app(app)`` per app: one database each."""
    db = FlaskDB()
    Note = make_note_model(db.Model)  # declared before any app exists

    def create_app(name: str) -> Flask:
        app = new_app(name, DATABASE=sqlite_url(name))
        db.init_app(app)
        add_views(app, Note)
        create_table(app, Note)
        return app

    one, two = create_app("one"), create_app("two")
    assert state(one).database is not state(two).database
    # Side by side in one process: each request writes to its own app's database.
    c1, c2 = one.test_client(), two.test_client()
    for _ in range(3):
        assert c1.post("/insert").status_code == 200
    assert c2.post("/insert").status_code == 200
    assert c1.get("/count").json == {"count": 3}
    assert c2.get("/count").json == {"count": 1}
    assert in_use(one) == in_use(two) == 0
    exercise(two)
    with one.app_context():
        assert db.database.obj is state(one).database
    with two.app_context():
        assert db.database.obj is state(two).database
    assert db.database.obj is state(two).database  # outside any app: the last one
    assert db.get_state(one) is state(one)


def test_app_factory_threads(new_app: Callable[..., Flask],
                             sqlite_url: Callable[[str], str]) -> None:
    """Two apps of one FlaskDB served by concurrent threads keep to their own pools."""
    db = FlaskDB()
    Note = make_note_model(db.Model)
    apps = []
    for name in ("left", "right"):
        app = new_app(name, DATABASE=sqlite_url(name), PEEWEE_POOL_MAX_CONNECTIONS=4)
        db.init_app(app)
        add_views(app, Note)
        create_table(app, Note)
        apps.append(app)
    errors: list[BaseException] = []

    def hammer(app: Flask) -> None:
        try:
            client = app.test_client()
            for _ in range(20):
                assert client.post("/insert").status_code == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(app,)) for app in apps for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    for app in apps:
        assert app.test_client().get("/count").json == {"count": 60}
        assert in_use(app) == 0
        assert state(app).stats().size <= 4


def test_excluded_routes(new_app: Callable[..., Flask],
                         sqlite_url: Callable[[str], str]) -> None:
    """``FLASKDB_EXCLUDED_ROUTES``: no checkout up front; a query there is still returned."""
    app = new_app(DATABASE=sqlite_url(), FLASKDB_EXCLUDED_ROUTES=("logout", "excluded_query"))
    db = FlaskDB(app)
    Note = make_note_model(db.Model)
    add_views(app, Note)
    create_table(app, Note)
    client = app.test_client()
    before = checkouts(app)
    assert client.get("/logout").status_code == 200
    assert checkouts(app) == before
    assert client.get("/noop").status_code == 200  # not excluded: FlaskDB checks out
    assert checkouts(app) == before + 1
    assert client.get("/excluded-query").json == {"count": 0}
    assert in_use(app) == 0


def test_excluded_routes_argument(new_app: Callable[..., Flask],
                                  sqlite_url: Callable[[str], str]) -> None:
    app = new_app(DATABASE=sqlite_url(), PEEWEE_POOL_EXCLUDED_ENDPOINTS="noop")
    db = FlaskDB(app, excluded_routes=["logout"])
    add_views(app, make_note_model(db.Model))
    assert state(app).excluded_endpoints == {"logout", "noop"}
    before = checkouts(app)
    app.test_client().get("/logout")
    app.test_client().get("/noop")
    assert checkouts(app) == before


def test_static_files_never_check_out(new_app: Callable[..., Flask], tmp_path: Path,
                                      sqlite_url: Callable[[str], str]) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "app.css").write_text("body {}")
    app = new_app(DATABASE=sqlite_url())
    app.static_folder = str(static)
    FlaskDB(app)
    response = app.test_client().get("/static/app.css")
    assert response.status_code == 200
    response.close()
    assert checkouts(app) == 0
    assert app.test_client().get("/missing").status_code == 404
    assert checkouts(app) == 0


def test_lazy_checkout(new_app: Callable[..., Flask], sqlite_url: Callable[[str], str]) -> None:
    """FlaskDB checks out before the view, as the original; ``lazy`` on first query."""
    app = new_app(DATABASE=sqlite_url(), PEEWEE_POOL_CHECKOUT="lazy")
    db = FlaskDB(app)
    add_views(app, make_note_model(db.Model))
    app.test_client().get("/noop")
    assert checkouts(app) == 0


def test_model_class(new_app: Callable[..., Flask], sqlite_url: Callable[[str], str]) -> None:
    class Base(peewee.Model):
        created = peewee.IntegerField(default=0)

        def describe(self) -> str:
            return f"#{self.id}"

    app = new_app(DATABASE=sqlite_url())
    db = FlaskDB(app, model_class=Base)
    assert issubclass(db.Model, Base)
    assert db.base_model_class is Base
    Note = make_note_model(db.Model)
    assert Note._meta.database is db.database
    assert "created" in Note._meta.fields
    other = db.get_model_class()
    assert other is not db.Model and issubclass(other, Base)
    assert other._meta.database is db.database
    add_views(app, Note)

    @app.get("/note/<int:pk>")
    def note(pk: int) -> Any:
        return {"describe": get_object_or_404(Note, Note.id == pk).describe()}

    create_table(app, Note)
    exercise(app)
    client = app.test_client()
    assert client.get("/note/1").json == {"describe": "#1"}
    assert client.get("/note/99").status_code == 404
    assert in_use(app) == 0


def test_session_interface_queries_first(new_app: Callable[..., Flask],
                                         sqlite_url: Callable[[str], str]) -> None:
    """peewee #1557: a session interface that queries before before_request ran.

    The original FlaskDB then raised "Connection already opened" in before_request.
    """
    db = FlaskDB()
    Note = make_note_model(db.Model)

    class DbSessions(SecureCookieSessionInterface):
        def open_session(self, app: Flask, request: Any) -> Any:
            g.rows_at_open = Note.select().count()
            return super().open_session(app, request)

        def save_session(self, app: Flask, session: Any, response: Any) -> None:
            Note.select().count()
            super().save_session(app, session, response)

    app = new_app(DATABASE=sqlite_url(), SECRET_KEY="test")
    app.session_interface = DbSessions()
    db.init_app(app)
    add_views(app, Note)
    create_table(app, Note)

    @app.get("/session")
    def session_view() -> Any:
        return {"rows_at_open": g.rows_at_open, "count": Note.select().count()}

    client = app.test_client()
    for _ in range(3):
        assert client.get("/session").json == {"rows_at_open": 0, "count": 0}
        assert in_use(app) == 0
    exercise(app)


def test_streamed_response_keeps_its_connection(new_app: Callable[..., Flask],
                                                sqlite_url: Callable[[str], str]) -> None:
    app = new_app(DATABASE=sqlite_url())
    db = FlaskDB(app)
    Note = make_note_model(db.Model)
    add_views(app, Note)
    create_table(app, Note)
    response = app.test_client().get("/stream", buffered=False)
    body: Iterator[bytes] = iter(response.response)
    assert next(body) == b"rows="
    assert in_use(app) == 1  # the body is still running: its connection is out
    assert b"".join(body) == b"0"
    response.close()
    assert in_use(app) == 0


# ------------------------------------------------------------------- instances, proxies


def test_pooled_instance(new_app: Callable[..., Flask], tmp_path: Path) -> None:
    """``FlaskDB(app, PooledSqliteDatabase(...))``: used as it is."""
    database = PooledSqliteDatabase(str(tmp_path / "inst.db"), max_connections=2)
    app = new_app()
    db = FlaskDB(app, database)
    assert state(app).database is database
    assert db.database.obj is database
    Note = make_note_model(db.Model)
    add_views(app, Note)
    create_table(app, Note)
    exercise(app)


def test_deferred_user_proxy(new_app: Callable[..., Flask],
                             sqlite_url: Callable[[str], str]) -> None:
    """A ``DatabaseProxy`` the models use: bound to the database built from the settings."""
    proxy = peewee.DatabaseProxy()
    Note = make_note_model(proxy.Model)
    app = new_app(DATABASE=sqlite_url())
    db = FlaskDB(app, proxy)
    assert proxy.obj is db.database
    add_views(app, Note)
    create_table(app, Note)
    exercise(app)
    with app.app_context():
        with proxy.atomic():
            Note.create(text="in atomic")
        assert Note.select().count() == 2


def test_bound_user_proxy(new_app: Callable[..., Flask], tmp_path: Path) -> None:
    database = PooledSqliteDatabase(str(tmp_path / "bound.db"))
    proxy = peewee.DatabaseProxy()
    proxy.initialize(database)
    app = new_app()
    FlaskDB(app, proxy)
    assert state(app).database is database
    assert proxy.obj is database


def test_playhouse_helpers_reexported() -> None:
    from flask_peewee_pool import flask_utils

    for name in ("get_object_or_404", "object_list", "PaginatedQuery"):
        assert getattr(flask_utils, name) is getattr(playhouse_flask_utils, name)


def test_top_level_import() -> None:
    """``from flask_peewee_pool import FlaskDB`` replaces playhouse's import."""
    import flask_peewee_pool

    assert flask_peewee_pool.FlaskDB is FlaskDB
    assert "FlaskDB" in flask_peewee_pool.__all__


# --------------------------------------------------------------------------- settings


def test_pool_settings(new_app: Callable[..., Flask], sqlite_url: Callable[[str], str]) -> None:
    """``PEEWEE_POOL_*`` keys apply to FlaskDB and win over the URL's query."""
    app = new_app(DATABASE=sqlite_url() + "?max_connections=9&stale_timeout=100",
                  PEEWEE_POOL_MAX_CONNECTIONS="3", PEEWEE_POOL_NAME="web",
                  PEEWEE_POOL_STATS_INTERVAL="0.5")
    FlaskDB(app)
    options = state(app).options
    assert (options.max_connections, options.max_lifetime, options.name) == (3, 100, "web")
    assert state(app).stats_interval == 0.5
    assert state(app).checkout == "eager"


def test_metrics(new_app: Callable[..., Flask], sqlite_url: Callable[[str], str]) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    app = new_app(DATABASE=sqlite_url(), PEEWEE_POOL_METRICS=registry,
                  PEEWEE_POOL_NAME="fdbmetrics", PEEWEE_POOL_MAX_CONNECTIONS=5)
    FlaskDB(app)
    state(app).metrics.update()
    assert registry.get_sample_value("peewee_pool_max_connections",
                                     {"pool": "fdbmetrics"}) == 5
    state(app).metrics.close()


def test_pooled_urls(new_app: Callable[..., Flask], tmp_path: Path) -> None:
    """playhouse.db_url's ``+pool`` schemes mean the same thing: every URL is pooled."""
    app = new_app(DATABASE=f"sqlite+pool:///{tmp_path / 'p.db'}")
    FlaskDB(app)
    assert isinstance(state(app).database, PooledSqliteDatabase)


SECRET = "pa55-Secret-xyz"
BAD = [
    # (config, constructor database, setting named, words)
    ({}, None, "DATABASE", "required"),
    ({"DATABASE": 42}, None, "DATABASE", "expected a database URL"),
    ({"DATABASE": f"oracle://u:{SECRET}@h/x"}, None, "DATABASE", "unsupported scheme"),
    ({"DATABASE": "sqlite:///x.db?max_connections=0"}, None, "DATABASE", "max_connections"),
    ({"DATABASE_URL": "nope"}, None, "DATABASE_URL", "URL"),
    ({"DATABASE": "sqlite:///a.db", "PEEWEE_POOL_DATABASE": "sqlite:///b.db"}, None,
     "PEEWEE_POOL_DATABASE", "DATABASE is set too"),
    ({"DATABASE": {"name": "x"}}, None, "DATABASE", "'name' and 'engine'"),
    ({"DATABASE": {"name": "x", "engine": "playhouse.pool.PooledPostgresqlExtDatabase"}},
     None, 'DATABASE["engine"]', "no pooled equivalent"),
    ({"DATABASE": {"name": "x", "engine": "playhouse.sqliteq.SqliteQueueDatabase"}},
     None, 'DATABASE["engine"]', "not a flask_peewee_pool pooled database"),
    ({"DATABASE": {"name": "x", "engine": "nowhere.Database"}},
     None, 'DATABASE["engine"]', "cannot import"),
    ({"DATABASE": {"name": "x", "engine": "SqliteDatabase", "stale_timeout": -1}},
     None, 'DATABASE["stale_timeout"]', "> 0"),
    ({"PEEWEE_POOL_MAX_CONNECTIONS": 0}, "sqlite:///x.db", "PEEWEE_POOL_MAX_CONNECTIONS",
     "integer >= 1"),
    ({"PEEWEE_POOL_MAX_CONECTIONS": 5}, "sqlite:///x.db", "PEEWEE_POOL_MAX_CONECTIONS",
     "unknown setting"),
    ({"PEEWEE_POOL_CHECKOUT": "later"}, "sqlite:///x.db", "PEEWEE_POOL_CHECKOUT", "'lazy'"),
    ({"FLASKDB_EXCLUDED_ROUTES": 3}, "sqlite:///x.db", "FLASKDB_EXCLUDED_ROUTES",
     "list of endpoint names"),
    ({}, peewee.SqliteDatabase("x.db"), "FlaskDB(database=...)", "PooledSqliteDatabase"),
    ({}, peewee.MySQLDatabase("x"), "FlaskDB(database=...)", "PooledMySQLDatabase"),
    ({}, 3.5, "FlaskDB(database=...)", "got float"),
    ({"PEEWEE_POOL_MAX_CONNECTIONS": 3}, "instance", "PEEWEE_POOL_MAX_CONNECTIONS",
     "database instance"),
    ({}, "deferred", "PEEWEE_POOL_DATABASE", "not initialised"),
]


@pytest.mark.parametrize(("config", "database", "setting", "words"), BAD,
                         ids=[f"{i}-{s}" for i, (_, _, s, _) in enumerate(BAD)])
def test_bad_settings_are_refused(new_app: Callable[..., Flask], tmp_path: Path,
                                  config: dict[str, Any], database: Any, setting: str,
                                  words: str) -> None:
    if database == "instance":
        database = PooledSqliteDatabase(str(tmp_path / "i.db"))
    elif database == "deferred":
        database = PooledSqliteDatabase(None)
    app = new_app(**config)
    db = FlaskDB(database=database)
    with pytest.raises(ConfigError) as info:
        db.init_app(app)
    assert isinstance(info.value, ValueError)  # what the original raised
    assert info.value.setting == setting
    assert words in str(info.value)
    assert SECRET not in str(info.value)
    assert "peewee_pool" not in app.extensions


def test_init_app_twice(new_app: Callable[..., Flask], sqlite_url: Callable[[str], str]) -> None:
    app = new_app(DATABASE=sqlite_url())
    db = FlaskDB(app)
    with pytest.raises(RuntimeError, match="already registered"):
        db.init_app(app)


def test_pool_exhausted_answers_503(new_app: Callable[..., Flask],
                                    sqlite_url: Callable[[str], str]) -> None:
    app = new_app(DATABASE=sqlite_url(), PEEWEE_POOL_MAX_CONNECTIONS=1,
                  PEEWEE_POOL_TIMEOUT=0.2)
    db = FlaskDB(app)
    add_views(app, make_note_model(db.Model))
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with app.app_context():
            db.database.connect()
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        response = app.test_client().get("/noop")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
    finally:
        release.set()
        thread.join(10)
    assert in_use(app) == 0
    assert app.test_client().get("/noop").status_code == 200
