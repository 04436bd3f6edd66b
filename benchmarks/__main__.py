"""Command line: ``python -m benchmarks [scenario ...] [--quick] [--out DIR]``.

Why it is shaped like this: one proxy and one admin connection for the whole run,
scenarios run one after another, pools whose code does not import are skipped (and
said so) rather than failing the run, and the run ends by checking that the server has
no more sessions than before it started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.dbutil import parse_db_url

from . import report
from .pools import POOLS, Target, availability
from .proxyctl import start_proxy
from .runner import Meters, server_pid
from .scenarios import SCENARIOS, Context, Settings, run_scenario

DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    scenario_help = "; ".join(f"{name}: {sc.summary}" for name, sc in SCENARIOS.items())
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Side-by-side pool benchmarks through a latency/fault proxy.",
    )
    p.add_argument(
        "scenarios",
        nargs="*",
        metavar="scenario",
        help=f"which to run (default: all). {scenario_help}",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="1 repeat, 2 s windows, 1 ms only (whole run well under 3 minutes)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="directory for the JSON results (default: benchmarks/results/)",
    )
    p.add_argument(
        "--pools", default=",".join(POOLS), help=f"comma-separated subset of {', '.join(POOLS)}"
    )
    p.add_argument("--repeats", type=int, help="runs per pool and case (default 3; quick 1)")
    p.add_argument("--duration", type=float, help="timed window in s (default 5; quick 2)")
    p.add_argument("--latencies-ms", help="steady: one-way latencies (default 0,1,5; quick 1)")
    p.add_argument("--cold-threads", type=int, default=30, help="cold: threads (default 30)")
    p.add_argument(
        "--connect-delay",
        type=float,
        default=0.2,
        help="cold: seconds added to each connect (default 0.2)",
    )
    p.add_argument(
        "--steady-threads",
        type=int,
        default=32,
        help="steady/overhead: threads = pool size (default 32)",
    )
    p.add_argument(
        "--proxy-mode",
        choices=("process", "thread"),
        default="process",
        help="run the proxy in a child process (default) or a thread of this one",
    )
    p.add_argument(
        "--no-tls",
        action="store_true",
        help="pass ssl_disabled=True (PyMySQL otherwise negotiates TLS if offered)",
    )
    p.add_argument(
        "--mysql-url",
        default=os.environ.get("FPP_MYSQL_URL", DEFAULT_URL),
        help=f"server to benchmark (default $FPP_MYSQL_URL or {DEFAULT_URL})",
    )
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {sorted(unknown)}; choose from {list(SCENARIOS)}")
    bad_pools = set(args.pools.split(",")) - set(POOLS)
    if bad_pools:
        p.error(f"unknown pool(s) {sorted(bad_pools)}; choose from {list(POOLS)}")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    lat = args.latencies_ms or ("1" if args.quick else "0,1,5")
    return Settings(
        quick=args.quick,
        repeats=args.repeats or (1 if args.quick else 3),
        pools=[p for p in POOLS if p in args.pools.split(",")],
        cold_threads=args.cold_threads,
        connect_delay=args.connect_delay,
        steady_threads=args.steady_threads,
        duration=args.duration or (2.0 if args.quick else 5.0),
        latencies_ms=[float(x) for x in lat.split(",")],
        tls=not args.no_tls,
    )


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("peewee", "SQLAlchemy", "PyMySQL", "flask-peewee-pool"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = settings_from(args)
    url = parse_db_url(args.mysql_url)
    direct = Target(url.host, url.port, url.user, url.password, url.database or "test", tls=s.tls)

    records: list[dict[str, Any]] = []
    pools = []
    for name in s.pools:
        why = availability(name)
        if why is None:
            pools.append(name)
        else:
            log(f"SKIPPING pool {name!r}: its code does not import ({why})")
            records.append({"scenario": "-", "case": "-", "pool": name, "skipped": why})

    scenario_names = args.scenarios or list(SCENARIOS)
    started = dt.datetime.now(dt.timezone.utc)
    admin = direct.connect()
    proxy = start_proxy(args.proxy_mode, direct.host, direct.port)
    try:
        ctx = Context(
            settings=s,
            proxy=proxy,
            via_proxy=Target(
                proxy.host, proxy.port, direct.user, direct.password, direct.database, tls=s.tls
            ),
            direct=direct,
            meters=Meters(
                proxy, server_pid() if direct.host in ("127.0.0.1", "localhost") else None
            ),
            admin=admin,
            log=log,
        )
        ctx.baseline_sessions = ctx.server_sessions()
        with admin.cursor() as cur:
            cur.execute("SELECT VERSION()")
            server_version = cur.fetchone()[0]
        log(
            f"server {server_version}, {ctx.baseline_sessions} session(s) before; proxy "
            f"{proxy.mode} on {proxy.host}:{proxy.port}; pools {pools}; {os.cpu_count()} CPUs"
        )
        t0 = time.monotonic()
        for name in scenario_names:
            log(f"== {name}")
            records += run_scenario(SCENARIOS[name], ctx, pools)
        total = time.monotonic() - t0
        sessions_after = ctx.wait_sessions(ctx.baseline_sessions)
    finally:
        proxy.stop()
        admin.close()

    text = [f"{sc}" for sc in (SCENARIOS[n].summarize(records, s) for n in scenario_names)]
    print("\n\n".join(text))
    issues = report.problems(records)
    if sessions_after > ctx.baseline_sessions:
        issues.append(
            f"server sessions: {ctx.baseline_sessions} before, {sessions_after} after"
            " (all clients of the server, other users' included)"
        )
    print()
    print("\n".join(["problems:", *issues]) if issues else "problems: none")
    print(
        f"server sessions before/after: {ctx.baseline_sessions}/{sessions_after};"
        f" total {total:.0f} s; proxy in a {proxy.mode}; TLS {'on' if s.tls else 'off'}"
    )

    payload = {
        "meta": {
            "started": started.isoformat(),
            "argv": sys.argv[1:] if argv is None else argv,
            "settings": vars(s),
            "scenarios": scenario_names,
            "proxy_mode": proxy.mode,
            "server": server_version,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "versions": versions(),
            "total_s": total,
            "server_sessions": [ctx.baseline_sessions, sessions_after],
        },
        "records": records,
    }
    name = f"{started:%Y%m%dT%H%M%SZ}-{'-'.join(scenario_names)}{'-quick' if s.quick else ''}.json"
    path = report.write_json(args.out, name, payload)
    print(f"raw results: {path}")
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
