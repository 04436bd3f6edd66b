"""The extension against MariaDB, logged in as the dedicated ``fpp_pool`` account so the
server's own session count can be checked against the pool's."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import dbutil
from tests.flask.helpers import Harness, build_harness, close_all, run_in_thread

pytestmark = pytest.mark.mysql


@pytest.fixture
def make_mysql_harness(mysql_pool_user: dbutil.MySQLPoolUser,
                       mysql_kill_pool_connections: Callable[[], int],
                       tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    built: list[Harness] = []

    def make(**config: Any) -> Harness:
        h = build_harness({
            "PEEWEE_POOL_DATABASE": mysql_pool_user.url,
            "PEEWEE_POOL_STATS_DIR": str(tmp_path / "stats"),
            "PEEWEE_POOL_TIMEOUT": 10,
            **config,
        })
        built.append(h)
        return h

    yield make
    if built:
        with built[-1].db.connection_context():
            built[-1].db.drop_tables([built[-1].Note], safe=True)
    close_all(built)


@pytest.fixture(params=["lazy", "eager"])
def harness(request: pytest.FixtureRequest,
            make_mysql_harness: Callable[..., Harness]) -> Harness:
    return make_mysql_harness(PEEWEE_POOL_CHECKOUT=request.param)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/count", 200),
    ("post", "/insert", 200),
    ("get", "/error", 500),
    ("get", "/abort", 404),
    ("post", "/atomic-error", 500),
])
def test_request_outcomes(harness: Harness, method: str, path: str, status: int) -> None:
    client = harness.app.test_client()
    assert getattr(client, method)(path).status_code == status
    assert harness.in_use() == 0
    assert harness.count_rows() == (1 if path == "/insert" else 0)


@pytest.mark.parametrize("path", ["/atomic-open", "/begin-open"])
def test_unbalanced_transaction_is_rolled_back(harness: Harness, path: str) -> None:
    client = harness.app.test_client()
    assert client.post(path).status_code == 200
    assert harness.in_use() == 0
    assert client.get("/count").json == {"count": 0}  # same warm connection, clean session
    assert harness.count_rows() == 0


@pytest.mark.parametrize("path", ["/stream", "/stream-context"])
def test_streamed_responses(harness: Harness, path: str) -> None:
    response = harness.app.test_client().get(path)
    assert response.get_data(as_text=True) == "rows=0;in_use=1;"
    assert harness.in_use() == 0


def test_cli_command(harness: Harness) -> None:
    result = harness.app.test_cli_runner().invoke(args=["touch-db"])
    assert result.exit_code == 0, result.output
    assert harness.in_use() == 0


def test_pool_exhaustion_answers_503(make_mysql_harness: Callable[..., Harness]) -> None:
    h = make_mysql_harness(PEEWEE_POOL_MAX_CONNECTIONS=1, PEEWEE_POOL_TIMEOUT=0.3)
    thread, out = run_in_thread(lambda: h.app.test_client().get("/hold").status_code)
    try:
        assert h.held.wait(10)
        response = h.app.test_client().get("/count")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
    finally:
        h.release.set()
        thread.join(10)
    assert out == [200]
    assert h.in_use() == 0


def test_settings_hide_the_password(harness: Harness,
                                    mysql_pool_user: dbutil.MySQLPoolUser) -> None:
    state = harness.state
    assert mysql_pool_user.password not in repr(state.settings) + repr(state)
    assert "***" in state.settings["database"]


# Weighted mix of what a view may do; only /insert commits a row.
MIX = [
    ("post", "/insert", 200, 4),
    ("get", "/count", 200, 4),
    ("get", "/error", 500, 2),
    ("get", "/abort", 404, 1),
    ("post", "/atomic-error", 500, 2),
    ("post", "/atomic-open", 200, 1),
    ("post", "/begin-open", 200, 1),
    ("get", "/stream", 200, 1),
    ("get", "/stream-context", 200, 1),
    ("get", "/noop", 200, 1),
]


@pytest.mark.parametrize("checkout", ["lazy", "eager"])
def test_concurrent_requests_with_random_failures(
        make_mysql_harness: Callable[..., Harness], mysql_pool_user: dbutil.MySQLPoolUser,
        checkout: str) -> None:
    max_connections, threads, per_thread = 4, 10, 20
    h = make_mysql_harness(PEEWEE_POOL_MAX_CONNECTIONS=max_connections,
                           PEEWEE_POOL_CHECKOUT=checkout)
    start = threading.Barrier(threads + 1)
    stop_sampling = threading.Event()
    seen: list[int] = []
    done: Counter[str] = Counter()
    done_lock = threading.Lock()
    errors: list[BaseException] = []

    def sampler() -> None:
        while not stop_sampling.is_set():
            seen.append(mysql_pool_user.server_connections())

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        client = h.app.test_client()
        try:
            start.wait(10)
            for _ in range(per_thread):
                method, path, status, _w = rng.choices(MIX, weights=[m[3] for m in MIX])[0]
                response = getattr(client, method)(path)
                response.get_data()
                assert response.status_code == status, (path, response.status_code)
                with done_lock:
                    done[path] += 1
        except BaseException as exc:
            errors.append(exc)

    sampling = threading.Thread(target=sampler, daemon=True)
    sampling.start()
    workers = [threading.Thread(target=worker, args=(seed,)) for seed in range(threads)]
    for w in workers:
        w.start()
    start.wait(10)
    for w in workers:
        w.join(60)
    stop_sampling.set()
    sampling.join(10)

    assert not errors, errors[:3]
    assert sum(done.values()) == threads * per_thread
    stats = h.pool.stats(h.app)
    assert stats.in_use == 0
    assert stats.size <= max_connections
    assert seen and max(seen) <= max_connections, max(seen)
    # Every row committed by /insert is there, and nothing a failed or unbalanced view wrote.
    assert h.count_rows() == done["/insert"]
    # What the pool holds is what the server sees (closes may still be in flight).
    mysql_pool_user.wait_until(h.pool.stats(h.app).size, timeout=10)
    assert h.in_use() == 0
