"""Fuzzing every way a setting gets in: bad input is a ConfigError naming it, never a crash.

Complements tests/unit/test_options.py (``PoolOptions.from_mapping`` with strings, explicit
bad values per field), tests/unit/test_urls.py (hand-picked URLs) and
tests/flask/test_config.py (hand-picked ``PEEWEE_POOL_*`` values) with generated input for
the entry points those leave out:

* ``PoolOptions(**kwargs)`` with typed values of every kind, several fields at once;
* the database classes' keyword and positional arguments (playhouse aliases included);
* ``flask_peewee_pool.connect(url)`` with generated URLs (every part malformed in turn);
* ``PeeweePool().init_app(app)`` with generated ``PEEWEE_POOL_*`` values.

The contract: either a working object, or :class:`ConfigError` whose ``setting`` names what
was wrong (as the user wrote it) and whose message never holds the password.

The regression cases at the end pin what the fuzzers found (finding F6 and F7 in
docs/reliability.md).
"""

from __future__ import annotations

import math
import tempfile
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_peewee_pool import (
    ConfigError,
    PooledMySQLDatabase,
    PooledSqliteDatabase,
    PoolOptions,
    connect,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Peewee no longer uses the \"autocommit\" option:DeprecationWarning")

SECRET = "Fuzz-S3cret-pw-91"
FIELDS = PoolOptions.field_names()
NUMERIC = [f for f in FIELDS if f not in ("name", "init_sql", "configure", "reset", "check")]
HOOKS = ("configure", "reset", "check")

# Hook values given as text are imported: never generate the name of a real module that
# does something when imported. These shapes reach every branch of the dotted-path parser.
hook_paths = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(["", ".", "..", ":", "fpp_no_such_module", "fpp_no_such_module.",
                     "os.path:", "math.", "math:floor", "math.pi"]),
    st.text(alphabet=".:_xyz", max_size=5),
)
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "0", "1", "-1", "2.5", "nan", "inf", "none", "1e309", " 3 "]),
    st.binary(max_size=3),
    st.lists(st.integers(-2, 2), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


def values_for(field: str) -> st.SearchStrategy[Any]:
    if field in HOOKS:
        return st.one_of(scalars.filter(lambda v: not isinstance(v, str)), hook_paths,
                         st.just(print), st.just(len))
    if field == "init_sql":
        return st.one_of(scalars, st.lists(st.one_of(st.text(max_size=8), st.integers()),
                                           max_size=3))
    return scalars


def kwargs_strategy(max_size: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(st.sampled_from(FIELDS), unique=True, max_size=max_size).flatmap(
        lambda keys: st.fixed_dictionaries({k: values_for(k) for k in keys}))




def assert_config_error(exc: BaseException, allowed: set[str]) -> None:
    assert isinstance(exc, ConfigError), f"{type(exc).__name__}: {exc}"
    assert exc.setting in allowed, (exc.setting, allowed, str(exc))
    assert str(exc).startswith(f"{exc.setting}: ")
    assert SECRET not in str(exc) and SECRET not in repr(exc)


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ----------------------------------------------------------------------------- PoolOptions


@FUZZ
@given(kwargs_strategy())
def test_pool_options_kwargs(kwargs: dict[str, Any]) -> None:
    try:
        opts = PoolOptions(**kwargs)
    except Exception as exc:
        # min_idle is checked against max_connections, whichever of the two was given.
        assert_config_error(exc, set(kwargs) | {"min_idle"})
        return
    for key in NUMERIC:
        value = getattr(opts, key)
        if value is not None:
            assert not isinstance(value, bool) and isinstance(value, (int, float))
            assert math.isfinite(value)
    assert opts.min_idle <= opts.max_connections
    assert isinstance(opts.name, str) and opts.name
    assert all(isinstance(s, str) and s.strip() for s in opts.init_sql)
    assert all(getattr(opts, h) is None or callable(getattr(opts, h)) for h in HOOKS)


@FUZZ
@given(kwargs_strategy(), kwargs_strategy(max_size=2))
def test_pool_options_replace(base: dict[str, Any], changes: dict[str, Any]) -> None:
    try:
        opts = PoolOptions(**base)
    except Exception:
        return
    try:
        opts.replace(**changes)
    except Exception as exc:
        assert_config_error(exc, set(changes) | {"min_idle", "max_connections"})


# ----------------------------------------------------------------------------- databases

ALIASES = {"stale_timeout": "max_lifetime", "pool_name": "name"}
DB_KEYS = [f for f in FIELDS if f != "name"] + list(ALIASES)


def db_kwargs() -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(st.sampled_from(DB_KEYS), unique=True, max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries(
            {k: values_for(ALIASES.get(k, k)) for k in keys}))


def _settings_named(kwargs: dict[str, Any]) -> set[str]:
    named = {ALIASES.get(k, k) for k in kwargs} | set(kwargs) | {"min_idle"}
    if "timeout" in kwargs:
        named.add("timeout")
    return named


@FUZZ
@given(cls=st.sampled_from([PooledSqliteDatabase, PooledMySQLDatabase]), kwargs=db_kwargs())
def test_database_class_kwargs(cls: type, kwargs: dict[str, Any]) -> None:
    extra = {"host": "127.0.0.1", "port": 1, "password": SECRET} if cls is PooledMySQLDatabase \
        else {}
    database = ":memory:" if cls is PooledSqliteDatabase else "fuzz"
    try:
        db = cls(database, **extra, **kwargs)
    except Exception as exc:
        assert_config_error(exc, _settings_named(kwargs))
        return
    try:
        opts = db.pool.options
        assert opts.min_idle <= opts.max_connections
        if kwargs.get("timeout") in (0, 0.0, "0") and not isinstance(kwargs["timeout"], bool):
            assert opts.timeout is None, "playhouse: timeout=0 waits for ever"
        assert SECRET not in repr(db.pool) and SECRET not in db.pool.driver.describe()
    finally:
        db.close_pool()


@FUZZ
@given(st.lists(scalars, max_size=3))
def test_database_class_positional_args_as_in_playhouse(args: list[Any]) -> None:
    """playhouse.pool's order: max_connections, stale_timeout, timeout."""
    names = ["max_connections", "max_lifetime", "timeout"][:len(args)]
    try:
        db = PooledSqliteDatabase(":memory:", *args)
    except Exception as exc:
        assert_config_error(exc, {*names, "min_idle"})
        return
    db.close_pool()


@pytest.mark.parametrize("value", [1, "x", {}, PoolOptions, None.__class__])
def test_pool_options_argument_must_be_a_pool_options(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        PooledSqliteDatabase(":memory:", pool_options=value)
    assert info.value.setting == "pool_options"


# ----------------------------------------------------------------------------- URLs

SCHEMES = ["mysql", "mariadb", "mysql+pool", "mysql+pymysql", "postgresql", "postgres",
           "postgresql+psycopg", "sqlite", "SQLite", "oracle", "http", "", "mysql+", "+pool"]
QUERY_KEYS = [*FIELDS, "stale_timeout", "pool_name", "charset", "connect_timeout",
              "read_timeout", "autocommit", "sslmode", "password", "database", "db", "user",
              "host", "port", "pool_options"]
url_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                   max_size=8)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(SCHEMES))
    user = draw(st.one_of(st.just(""), st.just("app"), url_text))
    password = draw(st.sampled_from(["", SECRET, f"{SECRET}@x", f"a/{SECRET}",
                                     f"{SECRET}:b", f"{SECRET}?x"]))
    if draw(st.booleans()):
        password = quote(password, safe="")
    host = draw(st.one_of(st.sampled_from(["h", "127.0.0.1", "[::1]", "[::1", "h]",
                                           "db.example", "", "h\uff03"]), url_text))
    port = draw(st.sampled_from(["", ":3306", ":0", ":99999", ":-1", ":abc", ":", ":1"]))
    path = draw(st.one_of(st.sampled_from(["/db", "", "/", "/%00", "/a/b", "/my%20db",
                                           "/:memory:"]), url_text.map(lambda t: "/" + t)))
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), url_text), max_size=3))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    url = f"{scheme}://{auth}{host}{port}{path}"
    return url + (f"?{query}" if query else "")


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(urls())
def test_connect_url(url: str) -> None:
    """Any URL: a database object (nothing connects yet), or a ConfigError naming DATABASE
    or the pool setting of a query parameter, without the password."""
    try:
        db = connect(url)
    except Exception as exc:
        allowed = {"DATABASE", "pool_options", "connect_args", *FIELDS}
        assert_config_error(exc, allowed)
        return
    try:
        if not isinstance(db, PooledSqliteDatabase):  # for SQLite it is part of a file path
            assert SECRET not in repr(db.pool) and SECRET not in db.pool.name
            assert SECRET not in db.pool.driver.describe()
    finally:
        db.close_pool()


# ----------------------------------------------------------------------------- Flask

PREFIX = "PEEWEE_POOL_"


def _ext_keys() -> list[str]:
    from flask_peewee_pool.ext import ACCEPTED_KEYS

    return list(ACCEPTED_KEYS)


def _flask_value(key: str) -> st.SearchStrategy[Any]:
    field = key.lower()
    if field in FIELDS:
        return values_for(field)
    if key == "DATABASE":
        return st.one_of(urls(), scalars)
    if key == "CONNECT_ARGS":
        return st.one_of(
            scalars,
            st.dictionaries(st.sampled_from(["charset", "timeout", "password", "bogus",
                                             "database", "pool_options", "stale_timeout",
                                             "max_connections", "pool_name"]),
                            scalars, max_size=2),
            st.sampled_from(['{"charset": "utf8"}', "{", "[1]", f'{{"password": "{SECRET}"',
                             '{"1": 2}', "null", '"x"']))
    if key == "CHECKOUT":
        return st.one_of(scalars, st.sampled_from(["lazy", "eager", " Eager ", "LAZY"]))
    if key == "EXCLUDED_ENDPOINTS":
        return st.one_of(scalars, st.lists(st.one_of(st.text(max_size=4), st.integers()),
                                           max_size=3))
    return scalars  # STATS_DIR, STATS_INTERVAL


@st.composite
def flask_config(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(_ext_keys()), unique=True, min_size=1, max_size=3))
    config = {PREFIX + k: draw(_flask_value(k)) for k in keys}
    config.setdefault(PREFIX + "DATABASE", "sqlite:///:memory:")
    return config


@pytest.fixture(scope="module")
def stats_root() -> Any:
    with tempfile.TemporaryDirectory() as path:
        yield path


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(config=flask_config())
def test_flask_settings(config: dict[str, Any], stats_root: str) -> None:
    from flask import Flask

    from flask_peewee_pool import PeeweePool

    app = Flask("fuzz_app")
    if PREFIX + "STATS_DIR" not in config:
        app.config[PREFIX + "STATS_DIR"] = stats_root
    app.config.update(config)
    try:
        PeeweePool(app)
    except Exception as exc:
        assert_config_error(exc, set(config))
        assert "peewee_pool" not in app.extensions
        return
    state = app.extensions["peewee_pool"]
    try:
        assert SECRET not in repr(state) and SECRET not in repr(state.settings)
    finally:
        from flask_peewee_pool import snapshots

        snapshots.stop_snapshots(state)
        state.database.close_pool()


# ----------------------------------------------------------------------------- regressions

@pytest.mark.parametrize("path", ["..x", "::", ".:mod"])
def test_hook_path_starting_with_two_dots_is_a_config_error(path: str) -> None:
    with pytest.raises(ConfigError) as info:
        PoolOptions(check=path)
    assert info.value.setting == "check"


@pytest.mark.parametrize("url", [f"mysql://app:{SECRET}@[::1/db", f"mysql://app:{SECRET}@h\uff03/db"])
def test_malformed_netloc_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        connect(url)
    assert info.value.setting == "DATABASE" and SECRET not in str(info.value)


@pytest.mark.parametrize("url", [
    f"mysql:///app:{SECRET}@db.example/app", f"postgresql:///app:{SECRET}@db.example/app",
    f"mysql://ap/p:{SECRET}@db.example/app"], ids=["mysql-3-slashes", "pg-3-slashes",
                                                  "slash-in-user"])
def test_credentials_in_the_path_are_a_config_error(url: str) -> None:
    db = None
    try:
        with pytest.raises(ConfigError) as info:
            db = connect(url)
        assert info.value.setting == "DATABASE" and SECRET not in str(info.value)
    finally:
        if db is not None:
            db.close_pool()


def test_database_query_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        connect("mysql://app@h/db?database=other")
    assert info.value.setting == "DATABASE"


@pytest.mark.parametrize("args", [{"database": "x"}, {"pool_options": 1}])
def test_reserved_connect_args_are_a_config_error(args: dict[str, Any], tmp_path: Any) -> None:
    from flask import Flask

    from flask_peewee_pool import PeeweePool

    app = Flask("fuzz_app")
    app.config.update(PEEWEE_POOL_DATABASE="sqlite:///:memory:", PEEWEE_POOL_CONNECT_ARGS=args,
                      PEEWEE_POOL_STATS_DIR=str(tmp_path))
    with pytest.raises(ConfigError) as info:
        PeeweePool(app)
    assert info.value.setting == "PEEWEE_POOL_CONNECT_ARGS"


@pytest.mark.parametrize("query", ["bogus=1", "connect_timeout=0", "port=abc"])
def test_invalid_mysql_driver_argument_is_a_config_error_at_start_up(query: str) -> None:
    db = None
    try:
        with pytest.raises(ConfigError):
            db = connect(f"mysql://app@127.0.0.1:1/db?{query}")
    finally:
        if db is not None:
            db.close_pool()
