"""Never serve a request as another user (issue 17), under every gunicorn worker model.

tests/gunicorn/multiuser_app.py is a multi-user Flask app written for plain peewee
(``before_request`` connects, ``teardown_request`` closes) whose ``database = ...`` line
builds our ``PooledMySQLDatabase`` at import time. gunicorn serves it with 2 workers as
``gthread``, ``gevent`` and ``gevent --preload`` (the database then exists in the master
before the worker patches ``threading``). 32 logged-in users post, follow and read their
timelines at once. Checked from outside:

* no response is a 5xx;
* every page is for the session that asked (the viewer the database reads back through the
  request's own connection is the user whose cookie was sent);
* every message is stored under the user who wrote it (the content names its author, and
  the row read back in the same transaction does too; the table is checked at the end);
* the server never sees more than ``workers x max_connections`` sessions of the account.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests import dbutil
from tests.gunicorn.conftest import DEADLINE, Gunicorn, Sampler

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "fpp_multiuser"
WORKERS = 2
MAX_CONNECTIONS = 4
CAP = WORKERS * MAX_CONNECTIONS
USERS = 32
ROUNDS = 8  # each round: post, read the timeline, read /me

VARIANTS = [
    pytest.param("gthread", False, id="gthread"),
    pytest.param("gevent", False, id="gevent"),
    pytest.param("gevent", True, id="gevent-preload"),
]

_HOOKS = '''
import os as _os

control_socket_disable = True


def post_worker_init(worker):
    _os.write(2, f"fpp-test: worker ready pid={worker.pid}\\n".encode())


def child_exit(server, worker):
    _os.write(2, f"fpp-test: child exit pid={worker.pid}\\n".encode())
'''


@pytest.fixture(scope="module")
def app_env(mysql_url: str, mysql_pool_user: Any) -> dict[str, str]:
    """The pool account on a database of its own, with the app's tables made fresh."""
    import pymysql

    admin = dbutil.parse_db_url(mysql_url)
    conn = pymysql.connect(**dbutil.mysql_connect_kwargs(admin, connect_timeout=5,
                                                         autocommit=True))
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
            cur.execute(f"CREATE DATABASE `{DATABASE}`")
    finally:
        conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEEWEE_POOL_")}
    env.update(
        FPP_MU_DATABASE=DATABASE,
        FPP_MU_HOST=mysql_pool_user.host,
        FPP_MU_PORT=str(mysql_pool_user.port),
        FPP_MU_USER=mysql_pool_user.user,
        FPP_MU_PASSWORD=mysql_pool_user.password,
        FPP_MU_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        PYTHONPATH=str(ROOT),
    )
    subprocess.run(
        [sys.executable, "-c", "import tests.gunicorn.multiuser_app as m; "
         "m.database.create_tables(m.MODELS); m.database.close_pool()"],
        cwd=ROOT, env=env, check=True, timeout=60)
    return env


@pytest.fixture
def clean_tables(app_env: dict[str, str], mysql_url: str, mysql_pool_user: Any) -> None:
    import pymysql

    mysql_pool_user.wait_until(0, timeout=10)
    admin = dbutil.parse_db_url(mysql_url)
    conn = pymysql.connect(**dbutil.mysql_connect_kwargs(admin, connect_timeout=5,
                                                         autocommit=True))
    try:
        with conn.cursor() as cur:
            for table in ("message", "relationship", "user"):
                cur.execute(f"DELETE FROM `{DATABASE}`.`{table}`")
    finally:
        conn.close()


def start(tmp_path: Path, env: dict[str, str], worker_class: str, preload: bool) -> Gunicorn:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(_HOOKS)
    args = [sys.executable, "-m", "gunicorn", "--config", str(config),
            "--bind", "127.0.0.1:0", "--workers", str(WORKERS),
            "--worker-class", worker_class, "--timeout", "30", "--graceful-timeout", "10",
            "--chdir", str(ROOT)]
    if worker_class == "gthread":
        args += ["--threads", "8"]
    else:
        args += ["--worker-connections", "100"]
    if preload:
        args.append("--preload")
    proc = subprocess.Popen([*args, "tests.gunicorn.multiuser_app:app"], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    server = Gunicorn(proc)
    server.wait_line(re.compile(rf"Using worker: {worker_class}$"))
    server.wait_ready(WORKERS)
    return server


@dataclass
class Answer:
    method: str
    path: str
    status: int | None
    body: dict[str, Any] | None
    error: str | None = None


@dataclass
class Client:
    """One logged-in user: its own cookie, its own connection per request."""

    port: int
    name: str
    cookie: str = ""
    answers: list[Answer] = field(default_factory=list)

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Connection": "close"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            cookie = response.getheader("Set-Cookie")
            if cookie:
                self.cookie = cookie.split(";", 1)[0]
            parsed = json.loads(data) if data.startswith(b"{") else None
            answer = Answer(method, path, response.status, parsed)
        except (OSError, http.client.HTTPException) as exc:
            answer = Answer(method, path, None, None, f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
        self.answers.append(answer)
        return answer

    def run(self, others: list[str], rounds: int, go: threading.Barrier) -> None:
        self.request("POST", "/join", {"username": self.name})
        go.wait(DEADLINE)  # every user exists before anyone follows
        for other in others:
            self.request("POST", f"/follow/{other}")
        for n in range(rounds):
            self.request("POST", "/post", {"content": f"{self.name}:{n}"})
            self.request("GET", "/timeline")
            self.request("GET", "/me")


def wrong_answers(client: Client) -> list[str]:
    """What this user's answers show that is not this user's."""
    wrong = []
    for a in client.answers:
        where = f"{client.name} {a.method} {a.path}"
        if a.status != 200 or a.body is None:
            wrong.append(f"{where}: {a.status or a.error}")
            continue
        if a.body.get("viewer") != client.name:
            wrong.append(f"{where}: served as {a.body.get('viewer')!r}")
        if "author" in a.body and a.body["author"] != client.name:
            wrong.append(f"{where}: message stored under {a.body['author']!r}")
        for m in a.body.get("messages", []):
            if not m["content"].startswith(m["author"] + ":"):
                wrong.append(f"{where}: {m['content']!r} shown under {m['author']!r}")
    return wrong


@pytest.mark.parametrize(("worker_class", "preload"), VARIANTS)
def test_every_user_sees_and_writes_only_their_own(
        tmp_path: Path, app_env: dict[str, str], clean_tables: None, mysql_url: str,
        mysql_pool_user: Any, worker_class: str, preload: bool) -> None:
    server = start(tmp_path, app_env, worker_class, preload)
    try:
        names = [f"user{i:02d}" for i in range(USERS)]
        clients = [Client(server.port, name) for name in names]
        go = threading.Barrier(USERS)
        threads = [
            threading.Thread(
                target=c.run, name=f"user-{c.name}", daemon=True,
                args=([names[(i + 1) % USERS], names[(i + 7) % USERS]], ROUNDS, go))
            for i, c in enumerate(clients)]
        started = time.monotonic()
        with Sampler(mysql_pool_user) as sampler:
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        took = time.monotonic() - started
        assert not [t.name for t in threads if t.is_alive()]
    finally:
        server.stop()
    log = server.log()

    answers = [a for c in clients for a in c.answers]
    wrong = [w for c in clients for w in wrong_answers(c)]
    assert wrong == [], (f"{len(wrong)} wrong of {len(answers)}:\n" + "\n".join(wrong[:20])
                         + "\ngunicorn's log ends:\n" + log[-3000:])
    assert len(answers) == USERS * (1 + 2 + 3 * ROUNDS)
    pids = {a.body["pid"] for a in answers if a.body}
    assert len(pids) == WORKERS, f"served by {pids}"  # both workers took part

    # The table, read afterwards: every message under the user who wrote it.
    import pymysql

    admin = dbutil.parse_db_url(mysql_url)
    conn = pymysql.connect(**dbutil.mysql_connect_kwargs(admin, connect_timeout=5))
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT u.username, m.content FROM `{DATABASE}`.message m "
                        f"JOIN `{DATABASE}`.`user` u ON u.id = m.user_id")
            rows = cur.fetchall()
    finally:
        conn.close()
    assert len(rows) == USERS * ROUNDS
    misplaced = [(u, c) for u, c in rows if not c.startswith(u + ":")]
    assert misplaced == []

    peak = sampler.max_between()
    assert peak <= CAP, f"server saw {peak} sessions of the account > {CAP}"
    print(f"\n{worker_class}{' --preload' if preload else ''}: {len(answers)} requests from "
          f"{USERS} users in {took:.2f} s, 0 wrong, {len(rows)} messages each under its "
          f"author, server peak {peak} sessions (cap {CAP})")
