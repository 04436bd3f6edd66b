"""Database URLs: schemes, pool keys vs driver keys, password handling, redaction."""

from __future__ import annotations

import pytest

from flask_peewee_pool.core.errors import ConfigError
from flask_peewee_pool.orm.database import (
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PooledSqliteDatabase,
)
from flask_peewee_pool.orm.urls import connect, parse, redact

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(("url", "cls"), [
    ("mysql://u@h/db", PooledMySQLDatabase),
    ("mariadb://u@h/db", PooledMySQLDatabase),
    ("mysql+pool://u@h/db", PooledMySQLDatabase),
    ("mysql+pymysql://u@h/db", PooledMySQLDatabase),
    ("MySQL://u@h/db", PooledMySQLDatabase),
    ("postgres://u@h/db", PooledPostgresqlDatabase),
    ("postgresql://u@h/db", PooledPostgresqlDatabase),
    ("postgresql+pool://u@h/db", PooledPostgresqlDatabase),
    ("postgresql+psycopg://u@h/db", PooledPostgresqlDatabase),
])
def test_schemes(url, cls):
    got, database, kwargs = parse(url)
    assert got is cls and database == "db"
    assert kwargs == {"host": "h", "user": "u"}


def test_mysql_url_with_everything():
    cls, database, kwargs = parse(
        "mysql://app:p%40ss%2Fw%3Ard@db.example:3307/orders"
        "?charset=utf8mb4&connect_timeout=5&autocommit=true&max_connections=10"
        "&stale_timeout=300&pool_name=orders&timeout=2.5")
    assert cls is PooledMySQLDatabase and database == "orders"
    assert kwargs == {
        "host": "db.example", "port": 3307, "user": "app", "password": "p@ss/w:rd",
        # driver keys: converted
        "charset": "utf8mb4", "connect_timeout": 5, "autocommit": True,
        # pool keys: left as strings for the database class to validate
        "max_connections": "10", "stale_timeout": "300", "pool_name": "orders",
        "timeout": "2.5",
    }


def test_driver_values_are_converted_pool_values_are_not():
    _, _, kwargs = parse("postgresql://h/db?sslmode=require&keepalives=1&flag=FALSE&neg=-3"
                         "&empty=&max_lifetime=60&ping_after=0")
    assert kwargs["sslmode"] == "require"
    assert kwargs["keepalives"] == 1
    assert kwargs["flag"] is False
    assert kwargs["neg"] == -3
    assert kwargs["empty"] == ""
    assert kwargs["max_lifetime"] == "60" and kwargs["ping_after"] == "0"


def test_query_overrides_netloc_nothing_silently():
    _, _, kwargs = parse("mysql://u:pw@h:3306/db?host=other")
    assert kwargs["host"] == "other", "explicit query parameters win"


def test_user_and_password_are_unquoted_and_optional():
    _, _, kwargs = parse("postgresql://us%20er:%F0%9F%94%91@h/db")
    assert kwargs["user"] == "us er" and kwargs["password"] == "\U0001f511"
    _, _, kwargs = parse("postgresql://u:@h/db")
    assert kwargs["password"] == ""
    _, _, kwargs = parse("postgresql://h/db")
    assert "user" not in kwargs and "password" not in kwargs and "port" not in kwargs


def test_ipv6_host():
    _, _, kwargs = parse("mysql://u@[::1]:3306/db")
    assert kwargs["host"] == "::1" and kwargs["port"] == 3306


def test_database_name_is_unquoted():
    assert parse("mysql://h/my%20db")[1] == "my db"


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///app.db", "app.db"),
    ("sqlite:////var/lib/app.db", "/var/lib/app.db"),
    ("sqlite:///:memory:", ":memory:"),
    ("sqlite://", ":memory:"),
    ("sqlite:///", ":memory:"),
    ("sqlite+pool:///data/x.db", "data/x.db"),
    ("sqlite:///my%20app.db", "my app.db"),
    ("sqlite://relative/dir/x.db", "relative/dir/x.db"),
])
def test_sqlite_paths(url, path):
    cls, database, kwargs = parse(url)
    assert cls is PooledSqliteDatabase and database == path and kwargs == {}


def test_sqlite_query_parameters():
    _, database, kwargs = parse("sqlite:///x.db?max_connections=4&timeout=5")
    assert database == "x.db" and kwargs == {"max_connections": "4", "timeout": "5"}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("url", [
    f"oracle://scott:{SECRET}@h/db",
    f"mysql://u:{SECRET}@h",
    f"mysql://u:{SECRET}@h/",
    f"mysql://u:{SECRET}@h:notaport/db",
    f"mysql://u:{SECRET}@h:99999/db",
    f"http://u:{SECRET}@h/db",
])
def test_bad_urls_are_config_errors_without_the_password(url):
    with pytest.raises(ConfigError) as info:
        parse(url)
    assert info.value.setting == "DATABASE"
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize("value", [None, 42, "", "localhost/db", "just-a-name"])
def test_not_a_url_is_a_config_error(value):
    with pytest.raises(ConfigError) as info:
        parse(value)  # type: ignore[arg-type]
    assert info.value.setting == "DATABASE"
    assert "mysql://" in str(info.value), "shows what a URL looks like"


def test_unsupported_scheme_lists_accepted_ones():
    with pytest.raises(ConfigError) as info:
        parse("mongodb://h/db")
    assert "mariadb" in str(info.value) and "postgresql" in str(info.value)


@pytest.mark.parametrize(("url", "expected"), [
    ("mysql://u:secret@h/db", "mysql://u:***@h/db"),
    ("mysql://u:secret@h:3306/db?x=1", "mysql://u:***@h:3306/db?x=1"),
    ("postgresql://:secret@h/db", "postgresql://:***@h/db"),
    ("mysql://u@h/db", "mysql://u@h/db"),
    ("mysql://h/db", "mysql://h/db"),
    ("mysql://u:p%40ss@h/db", "mysql://u:***@h/db"),
    ("mysql://u:p@ss@h/db", "mysql://u:***@h/db"),
])
def test_redact(url, expected):
    assert redact(url) == expected


def test_parse_accepts_a_raw_at_sign_in_the_password():
    assert parse("mysql://u:p@ss-tail@h/db")[2]["password"] == "p@ss-tail"


@pytest.mark.parametrize("url", [
    "mysql://u:p@ss-tail@h/",  # no database name
    "mysql://u:pa/ss-tail@h/db",  # the '/' ends the netloc: "invalid port"
])
def test_error_for_password_with_raw_delimiters_does_not_leak_it(url):
    with pytest.raises(ConfigError) as info:
        parse(url)
    assert "ss-tail" not in str(info.value)


def test_missing_scheme_does_not_echo_the_password():
    with pytest.raises(ConfigError) as info:
        parse(f"root:{SECRET}@localhost/db")
    assert SECRET not in str(info.value)


def test_a_query_parameter_the_driver_rejects_is_named_as_the_urls() -> None:
    """Found by the settings fuzzer: ``?port=:`` was reported against ``connect_args``,
    a setting the user never wrote."""
    with pytest.raises(ConfigError) as info:
        connect("mysql://h/db?port=:")
    assert info.value.setting == "DATABASE"
    assert "query parameter 'port'" in str(info.value)
