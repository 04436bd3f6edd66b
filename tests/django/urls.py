"""The Django test project's views: one per lifecycle case, on the pooled ``Note`` model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import peewee
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.static import serve

from flask_peewee_pool.django import Model, database, get_state


class Note(Model):
    text = peewee.TextField()

    class Meta:
        table_name = "fpp_django_note"


#: /hold sets ``held`` once it holds a connection, then waits for ``release``.
held = threading.Event()
release = threading.Event()


def count(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"count": Note.select().count()})


def insert(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"id": Note.create(text="committed").id})


def noop(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def error(request: HttpRequest) -> HttpResponse:
    Note.select().count()
    raise RuntimeError("view failed")


def atomic_open(request: HttpRequest) -> HttpResponse:
    database.atomic().__enter__()  # never exited: the view leaves a transaction open
    Note.create(text="uncommitted")
    return JsonResponse({"ok": True})


def begin_open(request: HttpRequest) -> HttpResponse:
    database.begin()  # a bare BEGIN peewee does not track
    Note.create(text="uncommitted")
    return JsonResponse({"ok": True})


def stream(request: HttpRequest) -> HttpResponse:
    Note.select().count()  # the view checks out; the body uses the same connection

    def body() -> Iterator[str]:
        yield "rows="
        yield str(Note.select().count())
        yield f";in_use={get_state().stats().in_use}"

    return StreamingHttpResponse(body())


def stream_lazy(request: HttpRequest) -> HttpResponse:
    def body() -> Iterator[str]:
        yield f"rows={Note.select().count()}"

    return StreamingHttpResponse(body())


def hold(request: HttpRequest) -> HttpResponse:
    Note.select().count()
    held.set()
    if not release.wait(30):
        raise RuntimeError("test never released /hold")
    return JsonResponse({"ok": True})


urlpatterns: list[Any] = [
    path("count", count),
    path("insert", insert),
    path("noop", noop),
    path("healthz", noop, name="healthz"),
    path("error", error),
    path("atomic-open", atomic_open),
    path("begin-open", begin_open),
    path("stream", stream),
    path("stream-lazy", stream_lazy),
    path("hold", hold),
    path("static/<path:path>", serve, {"document_root": settings.STATIC_DIR}),
]


class QueryingMiddleware:
    """A middleware outside the pool's that queries after the response was made."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response["X-Rows"] = str(Note.select().count())
        return response
