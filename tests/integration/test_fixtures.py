"""The database fixtures themselves work: URLs, the fpp_pool account, session counting."""

from __future__ import annotations

import contextlib

import pytest

from tests import dbutil


def _close_all(conns: list) -> None:
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()


def test_parse_urls() -> None:
    u = dbutil.parse_db_url("mysql://us%40r:p%3Aw@127.0.0.1:3307/test")
    assert (u.kind, u.user, u.password, u.host, u.port, u.database) == (
        "mysql",
        "us@r",
        "p:w",
        "127.0.0.1",
        3307,
        "test",
    )
    assert dbutil.mysql_connect_kwargs(u)["database"] == "test"
    assert dbutil.parse_db_url(u.to_url()) == u
    p = dbutil.parse_db_url("postgresql://postgres@localhost/test?sslmode=disable")
    assert dbutil.postgres_connect_kwargs(p) == {
        "host": "localhost",
        "port": 5432,
        "user": "postgres",
        "dbname": "test",
        "sslmode": "disable",
    }
    assert "p:w" not in repr(u) and "p%3Aw" not in repr(u)
    assert dbutil.redact_url("mysql://a:secret@h:1/d") == "mysql://a:***@h:1/d"
    with pytest.raises(dbutil.DBUrlError):
        dbutil.parse_db_url("sqlite:///x.db")


@pytest.mark.mysql
def test_mysql_pool_user_counts_sessions(mysql_pool_user, mysql_kill_pool_connections) -> None:
    import pymysql

    assert dbutil.POOL_PASSWORD not in repr(mysql_pool_user)
    assert mysql_pool_user.server_connections() == 0
    conns = [pymysql.connect(**mysql_pool_user.connect_kwargs()) for _ in range(3)]
    try:
        for conn in conns:
            with conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER()")
                assert cur.fetchone()[0].split("@")[0] == mysql_pool_user.user
        assert mysql_pool_user.server_connections() == 3
        assert len(mysql_pool_user.connection_ids()) == 3
    finally:
        _close_all(conns)
    assert mysql_pool_user.wait_until(0, timeout=10) == 0


@pytest.mark.mysql
def test_mysql_kill_all(mysql_pool_user, mysql_kill_pool_connections) -> None:
    import pymysql

    conns = [mysql_pool_user.connect() for _ in range(2)]
    try:
        assert mysql_pool_user.server_connections() == 2
        assert mysql_kill_pool_connections() == 2
        mysql_pool_user.wait_until(0, timeout=10)
        with pytest.raises(pymysql.err.OperationalError), conns[0].cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        _close_all(conns)


@pytest.mark.mysql
def test_mysql_pool_user_can_create_tables(mysql_pool_user) -> None:
    conn = mysql_pool_user.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS fpp_fixture_probe (id INT PRIMARY KEY)")
            cur.execute("DROP TABLE fpp_fixture_probe")
    finally:
        conn.close()


@pytest.mark.postgres
def test_postgres_pool_user_counts_sessions(
    postgres_pool_user, postgres_kill_pool_connections
) -> None:
    import psycopg

    assert dbutil.POOL_PASSWORD not in repr(postgres_pool_user)
    assert postgres_pool_user.server_connections() == 0
    conns = [psycopg.connect(**postgres_pool_user.connect_kwargs()) for _ in range(3)]
    try:
        for conn in conns:
            assert conn.execute("SELECT current_user").fetchone()[0] == postgres_pool_user.user
        assert postgres_pool_user.server_connections() == 3
    finally:
        _close_all(conns)
    assert postgres_pool_user.wait_until(0, timeout=10) == 0


@pytest.mark.postgres
def test_postgres_kill_all(postgres_pool_user, postgres_kill_pool_connections) -> None:
    import psycopg

    conns = [postgres_pool_user.connect() for _ in range(2)]
    try:
        assert postgres_pool_user.server_connections() == 2
        assert postgres_kill_pool_connections() == 2
        postgres_pool_user.wait_until(0, timeout=10)
        with pytest.raises(psycopg.OperationalError):
            conns[0].execute("SELECT 1")
    finally:
        _close_all(conns)


@pytest.mark.postgres
def test_postgres_pool_user_can_create_tables(postgres_pool_user) -> None:
    with postgres_pool_user.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fpp_fixture_probe (id int PRIMARY KEY)")
        conn.execute("DROP TABLE fpp_fixture_probe")


def test_url_fixtures_auto_mark(request, mysql_url, postgres_url) -> None:
    """Using a URL fixture is enough to get the mysql/postgres markers."""
    assert request.node.get_closest_marker("mysql") is not None
    assert request.node.get_closest_marker("postgres") is not None
    assert dbutil.parse_db_url(mysql_url).kind == "mysql"
    assert dbutil.parse_db_url(postgres_url).kind == "postgres"
