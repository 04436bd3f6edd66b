"""Issue 13: a short or common password must not break the CLI.

Masking used to replace the password as a substring everywhere, so with the password
``app`` pool-check printed ``KeyError: '***'`` and pool-stats died on ``KeyError: 'app'``;
``o`` gave ``KeyErr***r``; ``x`` turned an error into ``does not e***ist``. Redaction
now works on fields (the URL's password), never on text. PostgreSQL here trusts local
connections, so any password logs in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask

from flask_peewee_pool import PeeweePool
from tests import dbutil


def _app(url: str, tmp_path: Path) -> tuple[Flask, PeeweePool]:
    app = Flask("example_app")
    app.config.update(PEEWEE_POOL_DATABASE=url, PEEWEE_POOL_STATS_DIR=str(tmp_path / "s"))
    return app, PeeweePool(app)


def _url(postgres_url: str, password: str, database: str | None = None) -> str:
    parts = dbutil.parse_db_url(postgres_url)
    return parts.with_(password=password, database=database or parts.database).to_url()


@pytest.mark.postgres
@pytest.mark.parametrize("password", ["app", "o", "x", "e", "pool", "1"])
def test_short_passwords_do_not_break_pool_check_or_pool_stats(
        postgres_url: str, password: str, tmp_path: Path) -> None:
    app, pool = _app(_url(postgres_url, password), tmp_path)
    try:
        runner = app.test_cli_runner()
        for args in (["pool-check"], ["pool-check", "--json"], ["pool-stats"],
                     ["pool-stats", "--json"], ["pool-stats", "--server"]):
            result = runner.invoke(args=args)
            assert result.exception is None or isinstance(result.exception, SystemExit), \
                (args, result.output)
            assert result.exit_code == 0, (args, result.output)
            assert "KeyError" not in result.output and "could not run" not in result.output
            assert f":{password}@" not in result.output
        doc = json.loads(runner.invoke(args=["pool-check", "--json"]).stdout)
        assert doc["ok"] is True
        assert doc["database"]["url"].startswith("postgresql://postgres:***@")
        # Keys are keys: nothing renamed because it contains the password's letters.
        assert "max_connections" in doc["config"] and "connections" in doc
    finally:
        pool.close(app)


@pytest.mark.postgres
def test_an_error_message_is_not_mangled_by_the_password(postgres_url: str,
                                                         tmp_path: Path) -> None:
    app, pool = _app(_url(postgres_url, "x", database="fpp_no_such_db"), tmp_path)
    try:
        result = app.test_cli_runner().invoke(args=["pool-check"])
        assert result.exit_code == 1
        assert 'database "fpp_no_such_db" does not exist' in result.stderr
        assert "e***ist" not in result.output
    finally:
        pool.close(app)
