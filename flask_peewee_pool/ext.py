"""Import path kept for users: the Flask extension lives in :mod:`.adapters.flask_ext`."""

from .adapters.flask_ext import (
    ACCEPTED_KEYS,
    EXTENSION_KEY,
    PREFIX,
    AppDatabaseProxy,
    PeeweePool,
    PeeweePoolState,
)

__all__ = ["ACCEPTED_KEYS", "EXTENSION_KEY", "PREFIX", "AppDatabaseProxy", "PeeweePool",
           "PeeweePoolState"]
