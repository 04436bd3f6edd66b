"""PEEWEE_POOL_* settings: each bad value is refused at init_app, naming its key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_peewee_pool import ConfigError, PeeweePool, PooledSqliteDatabase, PoolOptions
from flask_peewee_pool.ext import ACCEPTED_KEYS
from tests.flask.helpers import sqlite_url

SECRET = "pa55-Secret-xyz"


def make_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config["PEEWEE_POOL_DATABASE"] = sqlite_url(tmp_path / "c.db")
    app.config["PEEWEE_POOL_STATS_DIR"] = str(tmp_path / "stats")
    for key, value in config.items():
        if value is _UNSET:
            app.config.pop(key, None)
        else:
            app.config[key] = value
    return app


_UNSET = object()

BAD = [
    # (key, value, words the message must contain)
    ("PEEWEE_POOL_DATABASE", _UNSET, "required"),
    ("PEEWEE_POOL_DATABASE", "", "required"),
    ("PEEWEE_POOL_DATABASE", 42, "URL"),
    ("PEEWEE_POOL_DATABASE", "not a url", "URL"),
    ("PEEWEE_POOL_DATABASE", f"root:{SECRET}@localhost/db", "URL"),
    ("PEEWEE_POOL_DATABASE", f"oracle://scott:{SECRET}@x@db/orcl", "unsupported scheme"),
    ("PEEWEE_POOL_DATABASE", f"oracle://scott:a/{SECRET}@db/orcl", "unsupported scheme"),
    ("PEEWEE_POOL_DATABASE", f"oracle://scott:{SECRET}@db/orcl", "unsupported scheme"),
    ("PEEWEE_POOL_DATABASE", f"mysql://root:{SECRET}@db:99999/test", "port"),
    ("PEEWEE_POOL_DATABASE", f"mysql://root:{SECRET}@db", "no database name"),
    ("PEEWEE_POOL_DATABASE", "sqlite:///x.db?max_connections=zero", "max_connections"),
    ("PEEWEE_POOL_DATABASE", "sqlite:///x.db?timeout=-1", "timeout"),
    ("PEEWEE_POOL_MAX_CONNECTIONS", 0, "integer >= 1"),
    ("PEEWEE_POOL_MAX_CONNECTIONS", -3, "integer >= 1"),
    ("PEEWEE_POOL_MAX_CONNECTIONS", "many", "integer"),
    ("PEEWEE_POOL_MAX_CONNECTIONS", 2.5, "integer"),
    ("PEEWEE_POOL_MAX_CONNECTIONS", True, "integer"),
    ("PEEWEE_POOL_MIN_IDLE", 50, "at most max_connections"),
    ("PEEWEE_POOL_MIN_IDLE", "-1", "integer >= 0"),
    ("PEEWEE_POOL_SEGMENTS", 0, "integer from 1 to 256"),
    ("PEEWEE_POOL_SEGMENTS", 10**18, "integer from 1 to 256"),
    ("PEEWEE_POOL_MAX_LIFETIME", -1, "> 0"),
    ("PEEWEE_POOL_MAX_LIFETIME", "forever", "number of seconds"),
    ("PEEWEE_POOL_LIFETIME_JITTER", 1.0, "[0, 1)"),
    ("PEEWEE_POOL_IDLE_TIMEOUT", 0, "> 0"),
    ("PEEWEE_POOL_PING_AFTER", -0.5, ">= 0"),
    ("PEEWEE_POOL_KEEPALIVE", "often", "number of seconds"),
    ("PEEWEE_POOL_TIMEOUT", -1, "> 0"),
    ("PEEWEE_POOL_TIMEOUT", "inf", "number of seconds"),
    ("PEEWEE_POOL_TIMEOUT", float("nan"), "finite"),
    ("PEEWEE_POOL_MAX_WAITING", -1, "integer >= 0"),
    ("PEEWEE_POOL_LEAK_THRESHOLD", 0, "> 0"),
    ("PEEWEE_POOL_MAINTENANCE_CONCURRENCY", 0, "integer >= 1"),
    ("PEEWEE_POOL_MAX_BACKOFF", 0, "> 0"),
    ("PEEWEE_POOL_NAME", "", "non-empty"),
    ("PEEWEE_POOL_CONNECT_ARGS", '{"timeout": ', "invalid JSON"),
    ("PEEWEE_POOL_CONNECT_ARGS", f'{{"password": "{SECRET}"', "invalid JSON"),
    ("PEEWEE_POOL_CONNECT_ARGS", "[1, 2]", "JSON object"),
    ("PEEWEE_POOL_CONNECT_ARGS", 42, "dict"),
    ("PEEWEE_POOL_CONNECT_ARGS", {1: "x"}, "strings"),
    ("PEEWEE_POOL_CONNECT_ARGS", {"max_connections": 3}, "PEEWEE_POOL_MAX_CONNECTIONS"),
    ("PEEWEE_POOL_CONNECT_ARGS", '{"stale_timeout": 3}', "PEEWEE_POOL_MAX_LIFETIME"),
    ("PEEWEE_POOL_CHECKOUT", "sometimes", "'lazy' or 'eager'"),
    ("PEEWEE_POOL_CHECKOUT", 1, "'lazy' or 'eager'"),
    ("PEEWEE_POOL_EXCLUDED_ENDPOINTS", 42, "list of endpoint names"),
    ("PEEWEE_POOL_EXCLUDED_ENDPOINTS", {"static": True}, "list of endpoint names"),
    ("PEEWEE_POOL_EXCLUDED_ENDPOINTS", ["ok", 3], "non-empty strings"),
    ("PEEWEE_POOL_EXCLUDED_ENDPOINTS", ("ok", ""), "non-empty strings"),
    ("PEEWEE_POOL_STATS_DIR", 42, "directory path"),
    ("PEEWEE_POOL_STATS_INTERVAL", 0, "> 0"),
    ("PEEWEE_POOL_STATS_INTERVAL", -5, "> 0"),
    ("PEEWEE_POOL_STATS_INTERVAL", "soon", "> 0"),
    ("PEEWEE_POOL_STATS_INTERVAL", "nan", "> 0"),
    ("PEEWEE_POOL_STATS_INTERVAL", True, "> 0"),
    ("PEEWEE_POOL_MAXCONNECTIONS", 5, "unknown setting"),
    ("PEEWEE_POOL_URL", "sqlite:///x.db", "unknown setting"),
]


@pytest.mark.parametrize(("key", "value", "words"), BAD,
                         ids=[f"{k[12:]}={v!r}"[:60] for k, v, _ in BAD])
def test_bad_setting_is_refused_at_init_app(tmp_path: Path, key: str, value: Any,
                                            words: str) -> None:
    app = make_app(tmp_path, **{key: value})
    pool = PeeweePool()
    with pytest.raises(ConfigError) as info:
        pool.init_app(app)
    message = str(info.value)
    assert info.value.setting == key
    assert message.startswith(f"{key}: ")
    assert words in message
    assert SECRET not in message and SECRET not in repr(info.value)
    assert "peewee_pool" not in app.extensions  # nothing half-registered
    with pytest.raises(AttributeError):
        pool.database.connect()  # the proxy was never bound


def test_unknown_key_names_the_closest_one(tmp_path: Path) -> None:
    # Issue 13: "did you mean", not all 27 keys.
    with pytest.raises(ConfigError) as info:
        PeeweePool(make_app(tmp_path, PEEWEE_POOL_MAX_CONECTIONS=5))
    assert info.value.setting == "PEEWEE_POOL_MAX_CONECTIONS"
    assert "did you mean PEEWEE_POOL_MAX_CONNECTIONS?" in str(info.value)
    assert "PEEWEE_POOL_MAX_LIFETIME" not in str(info.value)
    # Nothing close: then the list is the help.
    with pytest.raises(ConfigError) as info:
        PeeweePool(make_app(tmp_path, PEEWEE_POOL_ZZZ=5))
    for key in ACCEPTED_KEYS:
        assert f"PEEWEE_POOL_{key}" in str(info.value)
    # Every pool option has its setting, and nothing else sneaks in.
    assert {k.lower() for k in ACCEPTED_KEYS} >= set(PoolOptions.field_names())
    assert len(ACCEPTED_KEYS) == len(PoolOptions.field_names()) + 9


@pytest.mark.parametrize("value", [0, "0", "0.0"])
def test_timeout_zero_waits_forever(tmp_path: Path, value: Any) -> None:
    # As in playhouse.pool and in a URL's ?timeout=0: one meaning everywhere.
    app = make_app(tmp_path, PEEWEE_POOL_TIMEOUT=value)
    pool = PeeweePool(app)
    try:
        assert app.extensions["peewee_pool"].options.timeout is None
    finally:
        pool.close(app)


def test_defaults(tmp_path: Path) -> None:
    app = make_app(tmp_path, PEEWEE_POOL_STATS_DIR=_UNSET)
    pool = PeeweePool(app)
    state = app.extensions["peewee_pool"]
    try:
        assert state.app is app and state.extension is pool
        assert isinstance(state.database, PooledSqliteDatabase)
        assert pool.database.obj is state.database
        assert state.options == PoolOptions(name=app.import_name)
        assert state.checkout == "lazy"
        assert state.excluded_endpoints == frozenset()
        assert state.stats_dir == os.path.join(app.instance_path, "peewee_pool_stats")
        assert state.stats_interval == 5.0
        assert state.settings["max_connections"] == 20
        assert state.settings["name"] == app.import_name
        assert state.stats().name == app.import_name
    finally:
        state.database.close_pool()


def test_string_values_as_from_the_environment(tmp_path: Path) -> None:
    app = make_app(
        tmp_path,
        PEEWEE_POOL_MAX_CONNECTIONS="7",
        PEEWEE_POOL_MIN_IDLE=" 2 ",
        PEEWEE_POOL_MAX_LIFETIME="none",
        PEEWEE_POOL_TIMEOUT="2.5",
        PEEWEE_POOL_LIFETIME_JITTER="0",
        PEEWEE_POOL_NAME="web",
        PEEWEE_POOL_CONNECT_ARGS='{"cached_statements": 3, "check_same_thread": false}',
        PEEWEE_POOL_CHECKOUT=" Eager ",
        PEEWEE_POOL_EXCLUDED_ENDPOINTS="healthz, api.ping ,,",
        PEEWEE_POOL_STATS_INTERVAL="0.5",
        PEEWEE_POOL_STATS_DIR=tmp_path / "s",
    )
    app.config["PEEWEE_POOL_DATABASE"] = f"sqlite:///{tmp_path / 'c.db'}"
    state = _init(app)
    options = state.options
    assert (options.max_connections, options.min_idle, options.max_lifetime) == (7, 2, None)
    assert (options.timeout, options.lifetime_jitter, options.name) == (2.5, 0.0, "web")
    assert state.database.pool.options == options
    assert state.database.connect_params["cached_statements"] == 3
    assert state.database.connect_params["check_same_thread"] is False
    assert state.checkout == "eager"
    assert state.excluded_endpoints == {"healthz", "api.ping"}
    assert state.stats_interval == 0.5
    assert state.stats_dir == str(tmp_path / "s")


def test_from_prefixed_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_PEEWEE_POOL_DATABASE", sqlite_url(tmp_path / "env.db"))
    monkeypatch.setenv("FLASK_PEEWEE_POOL_MAX_CONNECTIONS", "3")
    monkeypatch.setenv("FLASK_PEEWEE_POOL_MAX_LIFETIME", "null")
    monkeypatch.setenv("FLASK_PEEWEE_POOL_NAME", "123")
    monkeypatch.setenv("FLASK_PEEWEE_POOL_CONNECT_ARGS", '{"cached_statements": 4}')
    monkeypatch.setenv("FLASK_PEEWEE_POOL_EXCLUDED_ENDPOINTS", '["a", "b"]')
    monkeypatch.setenv("FLASK_PEEWEE_POOL_STATS_DIR", str(tmp_path))
    app = Flask(__name__)
    app.config.from_prefixed_env()
    state = _init(app)
    assert state.database.database == str(tmp_path / "env.db")
    assert state.options.max_connections == 3
    assert state.options.max_lifetime is None
    assert state.options.name == "123"
    assert state.database.connect_params["cached_statements"] == 4
    assert state.excluded_endpoints == {"a", "b"}


def test_url_query_and_settings(tmp_path: Path) -> None:
    """Pool settings in the URL query count; an explicit PEEWEE_POOL_* key wins."""
    app = make_app(tmp_path, PEEWEE_POOL_TIMEOUT=3)
    app.config["PEEWEE_POOL_DATABASE"] = (
        f"sqlite:///{tmp_path / 'q.db'}?max_connections=4&timeout=9&stale_timeout=60")
    state = _init(app)
    assert state.options.max_connections == 4
    assert state.options.timeout == 3
    assert state.options.max_lifetime == 60


@pytest.mark.parametrize("password", [SECRET, f"{SECRET}@x", f"a%2F{SECRET}", f"{SECRET}:b"])
def test_settings_never_hold_the_password(tmp_path: Path, password: str) -> None:
    app = make_app(tmp_path, PEEWEE_POOL_CONNECT_ARGS={"password": SECRET, "charset": "utf8"})
    app.config["PEEWEE_POOL_DATABASE"] = (
        f"mysql://app:{password}@127.0.0.1:1/app?connect_timeout=1&password={SECRET}")
    state = _init(app)  # no connection is made at init_app: the database may be down
    text = repr(state.settings) + repr(state) + repr(state.options)
    assert SECRET not in text
    assert state.settings["database"].startswith("mysql://app:***@127.0.0.1:1/app?")
    assert state.settings["connect_args"] == {"password": "***", "charset": "utf8"}
    assert state.database.connect_params["password"] == SECRET


def test_init_app_twice_on_one_app(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    state = _init(app)
    with pytest.raises(RuntimeError, match="already registered"):
        PeeweePool(app)
    assert app.extensions["peewee_pool"] is state


def test_get_state_of_a_foreign_app(tmp_path: Path) -> None:
    pool = PeeweePool()
    with pytest.raises(RuntimeError, match="not registered"):
        pool.get_state(Flask(__name__))


_states: list[Any] = []


def _init(app: Flask) -> Any:
    PeeweePool(app)
    state = app.extensions["peewee_pool"]
    _states.append(state)
    return state


@pytest.fixture(autouse=True)
def _close_pools() -> Any:
    yield
    while _states:
        _states.pop().database.close_pool()
