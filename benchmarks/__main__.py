"""Command line: ``python -m benchmarks [scenario ...] [--quick | --smoke] [--out DIR]``.

Why it is shaped like this: one proxy and one admin connection for the whole run,
scenarios run one after another, pools whose code does not import are skipped (and
said so) rather than failing the run, and the run ends by checking that the server has
no more sessions than before it started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
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
from .scenarios import ALIASES, SCENARIOS, Context, Settings, run_scenario

DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    scenario_help = "; ".join(f"{name}: {sc.summary}" for name, sc in SCENARIOS.items())
    alias_help = ", ".join(f"{a}={n}" for a, n in ALIASES.items())
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Side-by-side pool benchmarks through a latency/fault proxy.",
    )
    p.add_argument(
        "scenarios",
        nargs="*",
        metavar="scenario",
        help=f"which to run (default: all). {scenario_help}. Aliases: {alias_help}",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="1 repeat, short windows, S2 at 1 and 5 ms only (all scenarios < 3 minutes)",
    )
    mode.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes and windows: only proves every code path runs (CI)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="directory for the JSON results (default: benchmarks/results/)",
    )
    p.add_argument(
        "--plots",
        type=Path,
        help="directory for the S3/S4 PNG plots (default: --out; docs/ for the docs)",
    )
    p.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    p.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        help="re-render a saved results JSON (tables, --markdown, --plots) without running",
    )
    p.add_argument(
        "--pools", default=",".join(POOLS), help=f"comma-separated subset of {', '.join(POOLS)}"
    )
    p.add_argument("--repeats", type=int, help="runs per pool and case (default 3; quick 1)")
    p.add_argument("--duration", type=float, help="S2 window in s (default 5; quick 1.5)")
    p.add_argument("--latencies-ms", help="S2 one-way latencies (default 0,1,5; quick 1,5)")
    p.add_argument("--cold-threads", type=int, help="S4 threads (default 50)")
    p.add_argument("--connect-delay", type=float, help="S4 seconds added per connect (0.2)")
    p.add_argument("--steady-threads", type=int, help="S2 threads = pool size (default 32)")
    p.add_argument(
        "--proxy-mode",
        choices=("process", "thread"),
        default="process",
        help="run the proxy in a child process (default) or a thread of this one",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="leave PyMySQL's default TLS 'preferred' on (default: ssl_disabled=True for all)",
    )
    p.add_argument(
        "--mysql-url",
        default=os.environ.get("FPP_MYSQL_URL", DEFAULT_URL),
        help=f"server to benchmark (default $FPP_MYSQL_URL or {DEFAULT_URL})",
    )
    args = p.parse_args(argv)
    names = [ALIASES.get(n, n) for n in args.scenarios]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {sorted(unknown)}; choose from {list(SCENARIOS)}")
    args.scenarios = list(dict.fromkeys(names))  # de-duplicated, in the order given
    bad_pools = set(args.pools.split(",")) - set(POOLS)
    if bad_pools:
        p.error(f"unknown pool(s) {sorted(bad_pools)}; choose from {list(POOLS)}")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    s = Settings.preset("smoke" if args.smoke else "quick" if args.quick else "full")
    s.pools = [p for p in POOLS if p in args.pools.split(",")]
    s.tls = args.tls
    if args.repeats:
        s.repeats = args.repeats
    if args.duration:
        s.duration = args.duration
    if args.latencies_ms:
        s.latencies_ms = [float(x) for x in args.latencies_ms.split(",")]
    if args.cold_threads:
        s.cold_threads = args.cold_threads
    if args.connect_delay is not None:
        s.connect_delay = args.connect_delay
    if args.steady_threads:
        s.steady_threads = args.steady_threads
    return s


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "flask-peewee-pool",
        "peewee",
        "SQLAlchemy",
        "DBUtils",
        "PyMySQL",
        "Flask",
        "waitress",
        "matplotlib",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_file is not None:  # re-render a saved run: tables, Markdown, plots
        payload = report.load(args.from_file)
        meta, records = payload["meta"], payload["records"]
        s = Settings(**meta["settings"])
        names = [n for n in meta["scenarios"] if not args.scenarios or n in args.scenarios]
        issues = report.problems(records)
        return output(args, s, names, meta, records, issues, path=args.from_file)
    s = settings_from(args)
    # The pools log every failed connect/rollback of the S5 outage with a traceback;
    # what matters is counted in the records instead. (Only for a live run: re-rendering
    # with --from, e.g. from a test, leaves the process's logging alone.)
    for name in ("sqlalchemy.pool", "flask_peewee_pool", "peewee.pool", "dbutils"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    meta, records, issues = run(args, s, argv)
    stem = f"{dt.datetime.fromisoformat(meta['started']):%Y%m%dT%H%M%SZ}"
    name = f"{stem}-{'-'.join(meta['scenarios'])}-{s.mode}.json"
    path = report.write_json(args.out, name, {"meta": meta, "records": records})
    return output(args, s, meta["scenarios"], meta, records, issues, path=path)


def run(
    args: argparse.Namespace, s: Settings, argv: list[str] | None
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Run the scenarios; returns (meta, records, problems)."""
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
    load_before = loadavg()
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
        scenario_s: dict[str, float] = {}
        for name in scenario_names:
            log(f"== {name}: {SCENARIOS[name].title}")
            t1 = time.monotonic()
            records += run_scenario(SCENARIOS[name], ctx, pools)
            scenario_s[name] = time.monotonic() - t1
        total = time.monotonic() - t0
        sessions_after = ctx.wait_sessions(ctx.baseline_sessions)
    finally:
        proxy.stop()
        admin.close()

    issues = report.problems(records)
    if sessions_after > ctx.baseline_sessions:
        issues.append(
            f"server sessions: {ctx.baseline_sessions} before, {sessions_after} after"
            " (all clients of the server, other users' included)"
        )
    meta = {
        "started": started.isoformat(),
        "argv": sys.argv[1:] if argv is None else argv,
        "settings": vars(s),
        "scenarios": scenario_names,
        "proxy_mode": proxy.mode,
        "server": server_version,
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "versions": versions(),
        "library": library_state(),
        "total_s": total,
        "scenario_s": scenario_s,
        "loadavg": [load_before, loadavg()],
        "server_sessions": [ctx.baseline_sessions, sessions_after],
        # Free-threaded builds: whether the GIL was on at the end (an extension module
        # without Py_mod_gil turns it back on for the whole process).
        "gil_enabled_at_end": getattr(sys, "_is_gil_enabled", lambda: True)(),
    }
    return meta, records, issues


def output(
    args: argparse.Namespace,
    s: Settings,
    scenario_names: list[str],
    meta: dict[str, Any],
    records: list[dict[str, Any]],
    issues: list[str],
    *,
    path: Path,
) -> int:
    """Tables on stdout, plots, the Markdown file.

    Exit status 1 (see :func:`report.exit_status`) if a run failed, a pool was skipped or
    a summary or plot could not be made; every other scenario is still reported.
    """
    issues = list(issues)
    failures: list[str] = []
    for n, pools in report.failed_scenarios(records).items():
        failures.append(f"{n}: FAILED for {', '.join(pools)} (every run of a case failed)")
    blocks: dict[str, list[report.Block]] = {}
    for n in scenario_names:
        try:
            blocks[n] = SCENARIOS[n].summarize(records, s)
        except Exception as exc:  # one scenario's summary must not cost the others
            failures.append(f"{n}: summary failed: {type(exc).__name__}: {exc}")
            blocks[n] = [report.Block(f"{SCENARIOS[n].title}: summary failed", [], [])]
    print("\n\n".join(b.text() for n in scenario_names for b in blocks[n]))
    plot_dir = args.plots or args.out
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    for n in scenario_names:
        try:
            plots += SCENARIOS[n].plot(records, s, plot_dir)
        except Exception as exc:  # a plot must never cost the figures
            failures.append(f"{n}: plot failed: {type(exc).__name__}: {exc}")
    issues = failures + issues
    print()
    print("\n".join(["problems:", *issues]) if issues else "problems: none")
    sessions = meta["server_sessions"]
    print(
        f"server sessions before/after: {sessions[0]}/{sessions[1]};"
        f" total {meta['total_s']:.0f} s; proxy in a {meta['proxy_mode']};"
        f" TLS {'on' if s.tls else 'off'}; load average before/after"
        f" {meta['loadavg'][0]}/{meta['loadavg'][1]}"
    )
    for plot in plots:
        print(f"plot: {plot}")
    print(f"raw results: {path}")
    if args.markdown:
        lib = meta.get("library", {})
        md = [
            f"Run {meta['started']} ({s.mode}, {s.repeats} repeat(s)): "
            f"`python -m benchmarks {' '.join(meta['argv'])}`; "
            f"{meta['cpus']} x {meta.get('cpu_model', '?')}, MariaDB {meta['server']}, "
            f"Python {meta['versions']['python']}, total {meta['total_s']:.0f} s, load average "
            f"{meta['loadavg'][0]} before / {meta['loadavg'][1]} after; library at "
            f"{lib.get('head', '?')} + working tree {lib.get('flask_peewee_pool_sha256', '?')}",
            "",
        ]
        for n in scenario_names:
            md += [f"### {SCENARIOS[n].title}", ""]
            md += [b.markdown() + "\n" for b in blocks[n]]
        md += ["problems: " + ("; ".join(issues) if issues else "none")]
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(md) + "\n")
        print(f"markdown: {args.markdown}")
    status = report.exit_status(records, failures)
    print(f"status: {'FAILED' if status else 'ok'}")
    return status


def library_state() -> dict[str, str]:
    """Which code was measured: HEAD plus a hash of flask_peewee_pool/ as it is on disk
    (others edit the working tree while benchmarks run)."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    package = root / "flask_peewee_pool"
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = "?"
    return {"head": head or "?", "flask_peewee_pool_sha256": digest.hexdigest()[:12]}


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


if __name__ == "__main__":
    sys.exit(main())
