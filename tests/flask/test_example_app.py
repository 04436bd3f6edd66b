"""The example app, through the test client, on SQLite: every route."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import example_app
from tests.flask.helpers import sqlite_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Flask]:
    app = example_app.create_app({
        "TESTING": True,
        "PEEWEE_POOL_DATABASE": sqlite_url(tmp_path / "example.db"),
        "PEEWEE_POOL_STATS_DIR": str(tmp_path / "stats"),
    })
    yield app
    app.extensions["peewee_pool"].database.close_pool()


@pytest.fixture
def client(example: Flask) -> FlaskClient:
    return example.test_client()


def in_use(app: Flask) -> int:
    return example_app.pool.stats(app).in_use


def test_healthz(example: Flask, client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["pool"]["in_use"] == 1  # its own connection, while answering
    assert in_use(example) == 0


def test_notes_api(example: Flask, client: FlaskClient) -> None:
    assert client.get("/api/notes").json == {"notes": []}

    created = client.post("/api/notes", json={"text": "  buy milk "})
    assert created.status_code == 201
    note = created.json
    assert note["text"] == "buy milk"
    assert created.headers["Location"] == f"/api/notes/{note['id']}"
    client.post("/api/notes", json={"text": "second"})

    assert [n["text"] for n in client.get("/api/notes").json["notes"]] == ["second", "buy milk"]
    assert client.get(f"/api/notes/{note['id']}").json == note

    assert client.delete(f"/api/notes/{note['id']}").status_code == 204
    assert client.get(f"/api/notes/{note['id']}").status_code == 404
    assert client.delete(f"/api/notes/{note['id']}").status_code == 404
    assert in_use(example) == 0


@pytest.mark.parametrize("payload", [{}, {"text": ""}, {"text": "   "}, {"text": 3},
                                     {"text": "x" * 1001}, None])
def test_create_note_rejects_bad_input(example: Flask, client: FlaskClient,
                                       payload: object) -> None:
    response = client.post("/api/notes", json=payload)
    assert response.status_code == 400
    assert "text" in response.json["error"]
    assert client.get("/api/notes").json == {"notes": []}
    assert in_use(example) == 0


def test_html_page(example: Flask, client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert b"No notes yet." in page.data
    assert b'<form method="post"' in page.data

    posted = client.post("/", data={"text": "<script>alert(1)</script>"})
    assert posted.status_code == 303
    assert posted.headers["Location"] == "/"
    page = client.get("/")
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.data
    assert b"<script>" not in page.data

    invalid = client.post("/", data={"text": " "})
    assert invalid.status_code == 400
    assert b"Write something" in invalid.data
    assert in_use(example) == 0


def test_settings_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEEWEE_POOL_DATABASE", sqlite_url(tmp_path / "env.db"))
    monkeypatch.setenv("PEEWEE_POOL_MAX_CONNECTIONS", "3")
    monkeypatch.setenv("FLASK_PEEWEE_POOL_TIMEOUT", "2")
    monkeypatch.setenv("PEEWEE_POOL_STATS_DIR", str(tmp_path / "stats"))
    app = example_app.create_app()
    state = app.extensions["peewee_pool"]
    try:
        assert state.database.database == str(tmp_path / "env.db")
        assert (state.options.max_connections, state.options.timeout) == (3, 2)
        assert app.test_client().get("/api/notes").json == {"notes": []}
    finally:
        state.database.close_pool()


def test_flask_cli_finds_the_app(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PEEWEE_POOL_DATABASE": sqlite_url(tmp_path / "cli.db"),
           "PEEWEE_POOL_STATS_DIR": str(tmp_path / "stats")}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", "routes"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for rule in ("/api/notes", "/api/notes/<int:note_id>", "/healthz"):
        assert rule in result.stdout
