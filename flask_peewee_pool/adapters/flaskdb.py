"""FlaskDB: a drop-in for ``playhouse.flask_utils.FlaskDB``, on our pool.

Switching is one import::

    -from playhouse.flask_utils import FlaskDB
    +from flask_peewee_pool import FlaskDB

Everything ``FlaskDB`` accepted still works: ``FlaskDB(app, database)``, ``FlaskDB()`` then
``init_app(app)``, the database as a URL, a dict (``{"name": ..., "engine": ...}``), a
pooled database instance or a ``DatabaseProxy``, given to the constructor or as the
``DATABASE`` (or ``DATABASE_URL``) setting, ``FLASKDB_EXCLUDED_ROUTES``, ``excluded_routes``,
``model_class``, ``db.Model``, ``db.database``, ``get_model_class()``. peewee's helpers
(``get_object_or_404``, ``object_list``, ``PaginatedQuery``) are re-exported, so
``from flask_peewee_pool.flask_utils import ...`` replaces ``playhouse.flask_utils`` whole.

FlaskDB is a :class:`~flask_peewee_pool.ext.PeeweePool` whose database comes from FlaskDB's
settings: the request lifecycle, the ``503`` answer, ``flask pool-stats`` and the
``PEEWEE_POOL_*`` pool settings (``PEEWEE_POOL_MAX_CONNECTIONS``, ...) are the extension's.
What changes for users of the original:

* Every URL is pooled: ``mysql://``, ``postgres(ql)://``, ``sqlite:///`` (and the
  ``+pool`` schemes). Engines in the dict form map to our classes: ``MySQLDatabase`` and
  ``playhouse.pool.PooledMySQLDatabase`` both become
  :class:`~flask_peewee_pool.PooledMySQLDatabase`, and so on. An unpooled instance
  (``peewee.SqliteDatabase(...)``) is refused with the class to use instead: swapping it
  behind the back of models bound to it would leave them unpooled.
* App factories: ``db = FlaskDB()`` at import, ``db.init_app(app)`` in the factory. Each
  app gets its own pooled database, and ``db.database`` is a proxy that, inside an app
  context, is that app's database (outside one, the last app's): two apps from one factory
  can run side by side in one process and each keeps to its own pool.
* The connection is checked out before the view (``connect(reuse_if_open=True)``: a
  session interface that queried first is not an error) and always returned, with any
  open transaction rolled back, also after an exception, ``abort()``, or a streamed
  response (when its body ends). Static files and excluded routes never check one out up
  front; a query there still works and is still returned (the original left it open).
  ``PEEWEE_POOL_CHECKOUT = "lazy"`` checks out on the first query instead.
* ``db.database`` is always a ``peewee.DatabaseProxy``, never the database itself
  (``db.database.obj`` is).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import peewee
from flask import Flask, request
from playhouse.flask_utils import PaginatedQuery, get_object_or_404, object_list

from ..core.errors import ConfigError
from ..core.options import ALIASES, PoolOptions
from ..integration import config as _settings
from ..integration.connections import release_connection
from ..integration.runtime import PoolRuntime
from ..ops.snapshots import DEFAULT_DIRNAME
from ..orm.database import (
    PooledDatabase,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PooledSqliteDatabase,
)
from .flask_ext import AppDatabaseProxy, PeeweePool

__all__ = [
    "AppDatabaseProxy",
    "FlaskDB",
    "PaginatedQuery",
    "get_object_or_404",
    "object_list",
]

#: Modules whose database classes the dict form maps to ours, by class name.
_ENGINE_MODULES = frozenset({"peewee", "playhouse.pool", "flask_peewee_pool",
                             "flask_peewee_pool.orm.database"})
_ENGINES: dict[str, type[PooledDatabase]] = {
    "MySQLDatabase": PooledMySQLDatabase,
    "PooledMySQLDatabase": PooledMySQLDatabase,
    "PostgresqlDatabase": PooledPostgresqlDatabase,
    "PooledPostgresqlDatabase": PooledPostgresqlDatabase,
    "SqliteDatabase": PooledSqliteDatabase,
    "PooledSqliteDatabase": PooledSqliteDatabase,
}
_ENGINE_NAMES = ", ".join(sorted(_ENGINES))


class FlaskDB(PeeweePool):
    """Drop-in for ``playhouse.flask_utils.FlaskDB`` (see the module docstring).

    ``database``: a URL, a dict with ``name`` and ``engine`` (plus constructor arguments,
    pool settings among them), a pooled database instance, or a ``DatabaseProxy`` (bound to
    the database built from the settings; or, if already bound, to what it holds). Without
    it, the ``DATABASE`` setting, then ``DATABASE_URL``, then ``PEEWEE_POOL_DATABASE``.
    ``excluded_routes``: endpoints that get no connection up front (``FLASKDB_EXCLUDED_ROUTES``
    replaces them per app, ``PEEWEE_POOL_EXCLUDED_ENDPOINTS`` adds to them).
    """

    def __init__(
        self,
        app: Flask | None = None,
        database: Any = None,
        model_class: type[peewee.Model] = peewee.Model,
        excluded_routes: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        self.base_model_class = model_class
        self._app = app
        self._db = database
        self._excluded_routes = excluded_routes or ()
        self.Model = self.get_model_class()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate ``app``'s settings, build its pooled database, hook its lifecycle."""
        self._check_unregistered(app)
        raw = _settings.prefixed(app.config)
        source, key, user_proxy = self._database_source(app, raw)
        if isinstance(source, str):
            database: Any = _settings.spec_from_url(source, key)
        elif isinstance(source, Mapping):
            database = _spec_from_dict(source, key)
        elif isinstance(source, PooledDatabase):
            database = source
        else:
            raise ConfigError(key, _not_a_database(source))
        if "FLASKDB_EXCLUDED_ROUTES" in app.config:
            excluded = _settings.parse_excluded(app.config["FLASKDB_EXCLUDED_ROUTES"],
                                                "FLASKDB_EXCLUDED_ROUTES")
        else:
            excluded = _settings.parse_excluded(self._excluded_routes, "excluded_routes")
        runtime = PoolRuntime.from_settings(
            raw, label=_settings.flask_label, name=app.import_name, app_name=app.name,
            checkout="eager", stats_dir=os.path.join(app.instance_path, DEFAULT_DIRNAME),
            database=database, extra_excluded=excluded, app=app, extension=self)
        self._app = app
        self._install(app, runtime)
        if user_proxy is not None and user_proxy.obj is None:
            user_proxy.initialize(self.database)

    def _database_source(self, app: Flask, raw: dict[str, Any]
                         ) -> tuple[Any, str, peewee.Proxy | None]:
        """(what the database is built from, the setting that named it, the user's proxy)."""
        source, user_proxy = self._db, None
        if isinstance(source, peewee.Proxy):
            user_proxy, source = source, source.obj
            if source is self.database:  # bound by an earlier init_app: use the settings
                source = None
        if source is not None:
            raw.pop("DATABASE", None)  # the constructor's database wins, as in FlaskDB
            return source, "FlaskDB(database=...)", user_proxy
        for key in ("DATABASE", "DATABASE_URL"):
            if key in app.config:
                if "DATABASE" in raw:
                    raise ConfigError(_settings.PREFIX + "DATABASE",
                                      f"{key} is set too: FlaskDB takes one of them")
                return app.config[key], key, user_proxy
        if "DATABASE" in raw:
            return raw.pop("DATABASE"), _settings.PREFIX + "DATABASE", user_proxy
        raise ConfigError("DATABASE", "required: a database URL such as "
                          "mysql://user:password@host/db, or a dict with 'name' and 'engine' "
                          "(or set DATABASE_URL, or PEEWEE_POOL_DATABASE)")

    def get_model_class(self) -> type[peewee.Model]:
        """A new base model class (``model_class``) bound to :attr:`database`."""
        class BaseModel(self.base_model_class):  # type: ignore[name-defined, misc]
            class Meta:
                database = self.database

        return BaseModel

    # playhouse's request hooks, for code that calls them itself; init_app does not need them.

    def connect_db(self) -> None:
        """Check out this request's connection now (no-op on an excluded endpoint)."""
        state = self.get_state()
        if request.endpoint in state.excluded_endpoints:
            return
        state.database.connect(reuse_if_open=True)

    def close_db(self, exc: BaseException | None = None) -> None:
        """Return this thread's connection now (rolling back an open transaction)."""
        release_connection(self.get_state().database)


# ---------------------------------------------------------------------- dict form


def _spec_from_dict(config: Mapping[str, Any], key: str) -> _settings.DatabaseSpec:
    """FlaskDB's ``{"name": ..., "engine": ..., **constructor arguments}``."""
    kwargs = dict(config)
    if "name" not in kwargs or "engine" not in kwargs:
        raise ConfigError(key, "the dict form must give 'name' and 'engine', e.g. "
                          "{'name': 'app', 'engine': 'playhouse.pool.PooledMySQLDatabase', "
                          "'user': ...}")
    db_class = _engine_class(kwargs.pop("engine"), f'{key}["engine"]')
    name = kwargs.pop("name")
    spelled = {ALIASES.get(k, k): k for k in kwargs}
    pool = _settings.take_pool_keys(kwargs)
    try:
        PoolOptions.from_mapping(pool)
    except ConfigError as exc:
        raise ConfigError(f'{key}["{spelled.get(exc.setting, exc.setting)}"]',
                          exc.detail) from None
    return _settings.DatabaseSpec(db_class, name, kwargs, pool,
                                  _settings.describe(db_class, name, kwargs))


def _engine_class(engine: Any, key: str) -> type[PooledDatabase]:
    if isinstance(engine, type):
        if issubclass(engine, PooledDatabase):
            return engine
        module, name = engine.__module__, engine.__name__
    elif isinstance(engine, str) and engine:
        module, _, name = engine.rpartition(".")
        module = module or "peewee"  # FlaskDB: a bare class name is peewee's
    else:
        raise ConfigError(key, f"expected a class path such as "
                          f"'playhouse.pool.PooledMySQLDatabase', got {engine!r}")
    if module in _ENGINE_MODULES:
        if name in _ENGINES:
            return _ENGINES[name]
        raise ConfigError(key, f"{module}.{name} has no pooled equivalent here; accepted: "
                          f"{_ENGINE_NAMES} (from peewee, playhouse.pool or flask_peewee_pool), "
                          "or a subclass of flask_peewee_pool.PooledDatabase")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(key, f"cannot import {module}.{name}") from None
    if isinstance(found, type) and issubclass(found, PooledDatabase):
        return found
    raise ConfigError(key, f"{module}.{name} is not a flask_peewee_pool pooled database; "
                      f"accepted: {_ENGINE_NAMES} (from peewee, playhouse.pool or "
                      "flask_peewee_pool), or a subclass of flask_peewee_pool.PooledDatabase")


def _not_a_database(source: Any) -> str:
    if isinstance(source, peewee.Database):
        kind = type(source)
        ours = next((cls.__name__ for base, cls in (
            (peewee.MySQLDatabase, PooledMySQLDatabase),
            (peewee.PostgresqlDatabase, PooledPostgresqlDatabase),
            (peewee.SqliteDatabase, PooledSqliteDatabase),
        ) if isinstance(source, base)), "PooledMySQLDatabase")
        return (f"a {kind.__module__}.{kind.__name__} is not pooled by flask-peewee-pool: "
                f"create it as flask_peewee_pool.{ours} (same arguments), or pass a URL")
    return ("expected a database URL, a dict with 'name' and 'engine', a "
            f"flask_peewee_pool pooled database or a DatabaseProxy, got {type(source).__name__}")
