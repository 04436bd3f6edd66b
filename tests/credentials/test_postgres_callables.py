"""PostgreSQL connects through peewee's own ``_connect``: callables are resolved there too.

(The local server trusts loopback connections, so this proves the plumbing, per connect;
the password change itself is tested against MariaDB.)
"""

from __future__ import annotations

from typing import Any

import pytest

from flask_peewee_pool import PooledPostgresqlDatabase

pytestmark = pytest.mark.postgres


def test_password_and_credentials_callables_are_called_per_connect(
        postgres_pool_user: Any) -> None:
    u = postgres_pool_user
    seen: list[str] = []

    def credentials() -> dict[str, Any]:
        seen.append("credentials")
        return {"user": u.user, "password": u.password}

    db = PooledPostgresqlDatabase(u.database, host=u.host, port=u.port,
                                  credentials=credentials, max_connections=2,
                                  pool_name="pg_rotation")
    try:
        for _ in range(2):
            pooled = db.pool.checkout()
            db.pool.checkin(pooled, broken=True)  # closed: the next checkout connects anew
        with db.connection_context():
            assert db.execute_sql("SELECT current_user").fetchone()[0] == u.user
        assert seen == ["credentials"] * 3
        assert "credentials" not in repr(db.pool)
    finally:
        db.close_pool()
