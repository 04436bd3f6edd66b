"""Django for these tests: configured once for this process (``settings.configure``), with
no Django ORM database (``DATABASES = {}``): the pool is the only database.

``use_pool(**settings)`` points ``PEEWEE_POOL`` at a fresh SQLite file (or the given
``DATABASE``) for one test, creates the Note table, and closes the pool afterwards."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings

STATIC_DIR = Path(tempfile.mkdtemp(prefix="fpp-django-static-"))
(STATIC_DIR / "app.css").write_text("body {}")

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="flask-peewee-pool tests",
        ALLOWED_HOSTS=["testserver", "localhost"],
        ROOT_URLCONF="tests.django.urls",
        MIDDLEWARE=["flask_peewee_pool.django.PoolMiddleware"],
        DATABASES={},
        INSTALLED_APPS=["flask_peewee_pool.django.PeeweePoolConfig"],
        USE_TZ=True,
        STATIC_DIR=str(STATIC_DIR),
        PEEWEE_POOL={"DATABASE": f"sqlite:///{STATIC_DIR / 'unused.db'}"},
    )
    django.setup()

from django.test import override_settings  # noqa: E402

from flask_peewee_pool import django as fpp_django  # noqa: E402
from tests.django.urls import Note  # noqa: E402


@pytest.fixture
def use_pool(tmp_path: Path) -> Iterator[Callable[..., fpp_django.DjangoPoolState]]:
    overrides: list[Any] = []

    def use(**values: Any) -> fpp_django.DjangoPoolState:
        values.setdefault("DATABASE", f"sqlite:///{tmp_path / 'django.db'}")
        values.setdefault("TIMEOUT", 10)
        override = override_settings(PEEWEE_POOL=values)
        override.enable()  # setting_changed: the previous pool is closed
        overrides.append(override)
        state = fpp_django.get_state()
        with fpp_django.database.connection_context():
            fpp_django.database.drop_tables([Note], safe=True)
            fpp_django.database.create_tables([Note])
        return state

    yield use
    if overrides:
        fpp_django.get_state()  # rebuilt if the test closed it
        with fpp_django.database.connection_context():
            fpp_django.database.drop_tables([Note], safe=True)
    while overrides:
        overrides.pop().disable()
    fpp_django.close()
