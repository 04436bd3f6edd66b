"""Thin adapters: translate a framework's events and options, then call the layers below.

:mod:`.flask_ext` (PeeweePool), :mod:`.flaskdb` (FlaskDB), :mod:`.flask_cli` (click
commands), :mod:`.wsgi` (any WSGI app), :mod:`.django_ext` (middleware, app config; the
management commands live in ``flask_peewee_pool/management/commands``, where Django looks).
"""
