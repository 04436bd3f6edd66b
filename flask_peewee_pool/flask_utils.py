"""``from flask_peewee_pool.flask_utils import FlaskDB``: the drop-in for
``playhouse.flask_utils`` (implemented in :mod:`.adapters.flaskdb`)."""

from .adapters.flaskdb import (
    AppDatabaseProxy,
    FlaskDB,
    PaginatedQuery,
    get_object_or_404,
    object_list,
)

__all__ = ["AppDatabaseProxy", "FlaskDB", "PaginatedQuery", "get_object_or_404", "object_list"]
