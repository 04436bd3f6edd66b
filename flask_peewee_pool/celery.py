"""``flask_peewee_pool.celery``: the Celery hooks, under the name the docs of other
libraries lead users to expect (the code lives in :mod:`.jobs.celery`)."""

from .jobs.celery import JobConnections, init_celery

__all__ = ["JobConnections", "init_celery"]
