"""Each framework internal that :mod:`flask_peewee_pool.compat` touches, checked against the
installed release (the nox matrix runs this on the lowest and newest supported ones)."""

from __future__ import annotations

import math

import pytest

from flask_peewee_pool import compat


def test_flask_error_handlers_by_class_for_app_and_blueprint() -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask("compat")
    bp = flask.Blueprint("bp", __name__)

    def on_key(exc: Exception) -> str:
        return "key"

    def on_value(exc: Exception) -> str:
        return "value"

    app.register_error_handler(KeyError, on_key)
    bp.register_error_handler(ValueError, on_value)
    app.register_error_handler(404, on_key)  # by code: not a class handler
    app.register_blueprint(bp)
    assert dict(compat.flask_error_handlers(app, None)) == {KeyError: on_key}
    assert dict(compat.flask_error_handlers(app, "bp")) == {ValueError: on_value}
    assert dict(compat.flask_error_handlers(app, "nope")) == {}
    assert "nope" not in app.error_handler_spec  # looking adds nothing


def test_django_response_close_runs_the_callback() -> None:
    pytest.importorskip("django")
    from django.http import HttpResponse, StreamingHttpResponse

    from tests.django import _setup  # noqa: F401  (configures Django)

    for response in (HttpResponse(b"x"), StreamingHttpResponse(iter([b"a", b"b"]))):
        calls: list[int] = []
        compat.on_response_close(response, lambda calls=calls: calls.append(1))
        assert calls == []
        response.close()
        assert calls == [1]


def test_prometheus_histogram_feed_adds_counts_and_sum() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    bounds = (0.1, 1.0)
    hist = prometheus_client.Histogram("compat_seconds", "x", ("pool",), buckets=bounds,
                                       registry=registry)
    child = hist.labels("p")
    feed = compat.histogram_feed(child, len(bounds) + 1)  # + the +Inf bucket
    assert feed is not None, "the installed prometheus_client lays histograms out anew"
    feed([2, 0, 1], 5.25)
    value = registry.get_sample_value
    assert value("compat_seconds_bucket", {"pool": "p", "le": "0.1"}) == 2
    assert value("compat_seconds_bucket", {"pool": "p", "le": "1.0"}) == 2
    assert value("compat_seconds_bucket", {"pool": "p", "le": "+Inf"}) == 3
    assert value("compat_seconds_count", {"pool": "p"}) == 3
    assert math.isclose(value("compat_seconds_sum", {"pool": "p"}), 5.25)
    assert compat.histogram_feed(child, 7) is None  # a layout it does not know: fall back
    assert compat.histogram_feed(object(), 3) is None


def test_peewee_proxy_slot_stores_what_initialize_gives() -> None:
    import peewee

    slot = compat.proxy_slot()
    proxy = peewee.DatabaseProxy()
    database = peewee.SqliteDatabase(":memory:")
    proxy.initialize(database)
    assert slot.__get__(proxy) is database
    slot.__set__(proxy, None)
    assert proxy.obj is None
