"""The example's one model, declared against the extension before any app exists."""

from __future__ import annotations

import datetime
from typing import Any

import peewee

from flask_peewee_pool import PeeweePool

pool = PeeweePool()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


class Note(pool.Model):
    text = peewee.TextField()
    created_at = peewee.DateTimeField(default=_now)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "created_at": self.created_at.isoformat()}
