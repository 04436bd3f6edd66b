"""S6 end to end: a real WSGI server in one process, an HTTP load generator in another.

* ``serve ours``: ``example_app.create_app()`` (the PeeweePool extension, lazy checkout)
  configured through ``PEEWEE_POOL_*`` environment variables.
* ``serve peewee``: the same route on ``playhouse.flask_utils.FlaskDB`` +
  ``playhouse.pool.PooledMySQLDatabase`` (connect in ``before_request``, close in
  ``teardown_request``: how FlaskDB works), same model, same table.
* both under waitress with ``threads`` worker threads and ``max_connections = threads``,
  both connecting through the benchmark's latency proxy to the ``fpp_bench`` database.
* ``load``: N threads, each with one keep-alive ``http.client`` connection, GET the same
  URL in a loop; prints ``start`` when the measured window opens, then one JSON line.

The harness side (:func:`measure`) starts both processes, reads CPU of every process
from /proc over the measured window, and always stops the server (SIGTERM, which closes
the pool, then SIGKILL after a bound).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "fpp_bench"
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


# ---------------------------------------------------------------------------- the apps


def ours_app(db: dict[str, Any], threads: int) -> tuple[Any, Any]:
    query = "&".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in db["params"].items()
    )
    os.environ["PEEWEE_POOL_DATABASE"] = (
        f"mysql://{db['user']}@{db['host']}:{db['port']}/{DATABASE}?{query}"
    )
    os.environ["PEEWEE_POOL_MAX_CONNECTIONS"] = str(threads)
    from example_app import create_app

    app = create_app()
    database = app.extensions["peewee_pool"].database
    return app, database.close_pool


def peewee_app(db: dict[str, Any], threads: int) -> tuple[Any, Any]:
    import peewee
    from flask import Flask
    from playhouse.flask_utils import FlaskDB
    from playhouse.pool import PooledMySQLDatabase

    database = PooledMySQLDatabase(
        DATABASE,
        max_connections=threads,
        timeout=30,
        host=db["host"],
        port=db["port"],
        user=db["user"],
        password=db["password"],
        **db["params"],
    )
    app = Flask("peewee_app")
    wrapper = FlaskDB(app, database)

    def now() -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    class Note(wrapper.Model):  # type: ignore[name-defined, misc]
        text = peewee.TextField()
        created_at = peewee.DateTimeField(default=now)

        class Meta:
            table_name = "note"

        def to_dict(self) -> dict[str, Any]:
            return {"id": self.id, "text": self.text, "created_at": self.created_at.isoformat()}

    with database.connection_context():
        database.create_tables([Note], safe=True)

    @app.get("/api/notes/<int:note_id>")
    def get_note(note_id: int) -> Any:
        note = Note.get_or_none(Note.id == note_id)
        if note is None:
            return {"error": "not found"}, 404
        return note.to_dict()

    @app.post("/api/notes")
    def create_note() -> Any:
        from flask import request

        note = Note.create(text=(request.get_json(silent=True) or {}).get("text", "x"))
        return note.to_dict(), 201

    @app.delete("/api/notes/<int:note_id>")
    def delete_note(note_id: int) -> Any:
        if not Note.delete().where(Note.id == note_id).execute():
            return {"error": "not found"}, 404
        return "", 204

    return app, database.close_all


def serve(args: argparse.Namespace) -> int:
    import logging

    from waitress.server import create_server

    logging.getLogger("waitress").setLevel(logging.ERROR)
    db = json.loads(args.db)
    build = ours_app if args.app == "ours" else peewee_app
    app, close_pool = build(db, args.threads)
    server = create_server(app, host="127.0.0.1", port=0, threads=args.threads)

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"port {server.effective_port}", flush=True)
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        try:
            close_pool()
        finally:
            os._exit(0)  # waitress worker threads may still be parked on their queue
    return 0


# ------------------------------------------------------------------------ load generator


def load(args: argparse.Namespace) -> int:
    n = args.clients
    barrier = threading.Barrier(n + 1)
    window: list[float] = []
    results: list[dict[str, Any]] = [{"lat": [], "bad": 0, "first_bad": None} for _ in range(n)]

    def client(res: dict[str, Any]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        barrier.wait(30)
        start, end = window
        try:
            while (t0 := time.perf_counter()) < end:
                try:
                    conn.request("GET", args.path)
                    resp = conn.getresponse()
                    resp.read()
                    ok = resp.status == 200
                except (OSError, http.client.HTTPException) as exc:
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
                    if res["first_bad"] is None:
                        res["first_bad"] = repr(exc)
                else:
                    if not ok and res["first_bad"] is None:
                        res["first_bad"] = f"HTTP {resp.status}"
                t1 = time.perf_counter()
                if t0 >= start:
                    if ok:
                        res["lat"].append(t1 - t0)
                    else:
                        res["bad"] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(r,), daemon=True) for r in results]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window.extend([now + args.warmup, now + args.warmup + args.duration])
    barrier.wait(30)
    time.sleep(max(0.0, window[0] - time.perf_counter()))
    print("start", flush=True)
    for t in threads:
        t.join(args.warmup + args.duration + 60)
    lat = sorted(x for r in results for x in r["lat"])

    def pct(q: float) -> float:
        return (
            lat[max(0, min(len(lat) - 1, math.ceil(q / 100 * len(lat)) - 1))] if lat else math.nan
        )

    out = {
        "requests": len(lat),
        "requests_per_s": len(lat) / args.duration,
        "http_errors": sum(r["bad"] for r in results),
        "first_error": next((r["first_bad"] for r in results if r["first_bad"]), None),
        "latency_s": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100)},
        "hung_clients": sum(t.is_alive() for t in threads),
    }
    print(json.dumps(out), flush=True)
    return 0


# ------------------------------------------------------------------------- harness side


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of the child's stdout within ``timeout`` seconds, or RuntimeError."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"no output from {proc.args!r} within {timeout:g} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{proc.args!r} exited with {proc.wait(5)}")
            return line.strip()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _request(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status} {data[:200]!r}")
        return json.loads(data) if data else None
    finally:
        conn.close()


def measure(ctx: Any, pool: str, case: Any) -> dict[str, Any]:
    from .proxyctl import cpu_seconds
    from .runner import machine_busy_seconds

    s = ctx.settings
    with ctx.admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    target = ctx.via_proxy
    params: dict[str, Any] = {"connect_timeout": 10, "read_timeout": 30, "write_timeout": 30}
    if not target.tls:
        params["ssl_disabled"] = True
    db = {
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "password": target.password,
        "params": params,
    }
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PEEWEE_POOL_DATABASE", None)
    cmd = [sys.executable, "-m", "benchmarks.e2e"]
    server = subprocess.Popen(
        [
            *cmd,
            "serve",
            "--app",
            pool,
            "--threads",
            str(s.e2e_server_threads),
            "--db",
            json.dumps(db),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    loader: subprocess.Popen[str] | None = None
    try:
        port = int(_readline(server, _START_TIMEOUT).split()[1])
        note = _request(port, "POST", "/api/notes", {"text": "benchmark"})
        loader = subprocess.Popen(
            [
                *cmd,
                "load",
                "--port",
                str(port),
                "--path",
                f"/api/notes/{note['id']}",
                "--clients",
                str(s.e2e_clients),
                "--duration",
                str(s.e2e_duration),
                "--warmup",
                str(s.e2e_warmup),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        pids = {"server": server.pid, "loadgen": loader.pid}
        bound = s.e2e_warmup + s.e2e_duration + 60

        def sample() -> dict[str, float | None]:
            out = {k: cpu_seconds(pid) for k, pid in pids.items()}
            out["proxy"] = ctx.proxy.cpu_seconds()
            out["db"] = cpu_seconds(ctx.meters.server) if ctx.meters.server else None
            out["machine"] = machine_busy_seconds()
            return out

        if _readline(loader, bound) != "start":
            raise RuntimeError("load generator did not start")
        t0, before = time.perf_counter(), sample()
        result = json.loads(_readline(loader, bound))
        t1, after = time.perf_counter(), sample()
        loader.wait(10)
        _request(port, "DELETE", f"/api/notes/{note['id']}")
    except Exception as exc:
        err = server.stderr.read()[-2000:] if server.poll() is not None and server.stderr else ""
        raise RuntimeError(f"{exc} {err}") from exc
    finally:
        if loader is not None and loader.poll() is None:
            loader.kill()
            loader.wait(5)
        _stop(server)
    span = t1 - t0
    cores: dict[str, float | None] = {}
    for key in ("server", "loadgen", "proxy", "db", "machine"):
        a, b = before.get(key), after.get(key)
        cores[key] = (b - a) / span if a is not None and b is not None else None
    if cores["machine"] is not None:
        known = sum(cores[k] or 0.0 for k in ("server", "loadgen", "proxy", "db"))
        cores["other"] = max(0.0, cores["machine"] - known)
    result["cores"] = cores
    idle = ctx.proxy.wait_idle(5.0)
    result["leftover_connections"] = 0 if idle else int(ctx.proxy.get("active"))
    if not idle:  # counted against this app; reset so the next run starts clean
        ctx.proxy.call("reset_all")
    result["errors"] = result["http_errors"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.e2e")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve")
    sp.add_argument("--app", choices=("ours", "peewee"), required=True)
    sp.add_argument("--threads", type=int, default=8)
    sp.add_argument("--db", required=True, help="JSON: host, port, user, password, params")
    lp = sub.add_parser("load")
    lp.add_argument("--port", type=int, required=True)
    lp.add_argument("--path", required=True)
    lp.add_argument("--clients", type=int, default=16)
    lp.add_argument("--duration", type=float, default=5.0)
    lp.add_argument("--warmup", type=float, default=1.0)
    args = p.parse_args(argv)
    return serve(args) if args.cmd == "serve" else load(args)


if __name__ == "__main__":
    sys.exit(main())
