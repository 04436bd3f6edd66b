"""A bounded soak: random faults under load, then the end state is exact.

For ``FPP_SOAK_SECONDS`` (default 25) ten threads query through a pool of six connections
with short lifetimes, keepalive and idle timeout (so the maintainer recycles, pings and
closes while faults land), and the main thread injects random faults: KILL of every
session, a reset of every connection, refused connects, latency spikes, short blackholes,
connections cut after a few bytes, slow connects. The seed is printed (``FPP_SOAK_SEED``
replays a run).

Throughout: never more live sessions than ``max_connections`` on the server, no connection
held by two threads, every result the right one, every error the pool's or the driver's,
no request longer than a bound. At the end, after a calm period: every request succeeds,
nothing is in use, and the server sees exactly the pool's open connections.
"""

from __future__ import annotations

import collections
import os
import random
import time
from typing import Any

import peewee
import pytest

from flask_peewee_pool import PoolError
from tests.faults.conftest import Load, Timeline, check_load, clock, settle, summary

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

MAX = 6
THREADS = 10
ALLOWED = (PoolError, peewee.OperationalError, peewee.InterfaceError, peewee.InternalError)
#: No request may take longer: wait (2) + ping (2) + connect (2) + query (2) + slack.
LONGEST = 10.0


def _soak_seconds() -> float:
    return float(os.environ.get("FPP_SOAK_SECONDS", "") or 25)


def _seed() -> int:
    value = os.environ.get("FPP_SOAK_SEED", "").strip()
    return int(value) if value else random.randrange(2**32)


def test_soak_random_faults_under_load(make_db: Any, proxy: Any, admin: Any, monitor: Any,
                                       figures: Any) -> None:
    seconds = _soak_seconds()
    seed = _seed()
    rng = random.Random(seed)
    print(f"\nsoak: {seconds} s, FPP_SOAK_SEED={seed}")
    db = make_db(max_connections=MAX, min_idle=2, timeout=2, connect_timeout=1,
                 read_timeout=2, write_timeout=2, max_lifetime=4, lifetime_jitter=0.5,
                 keepalive=1, idle_timeout=3, max_backoff=0.5)
    faults: collections.Counter[str] = collections.Counter()
    t = Timeline()
    load = Load(db, THREADS).start()
    t.mark("start")
    while clock() - t["start"] < seconds:
        time.sleep(rng.uniform(0.2, 0.8))
        kind = rng.choice(["kill", "reset", "refuse", "latency", "blackhole", "cut",
                           "slow_connect", "calm"])
        faults[kind] += 1
        if kind == "kill":
            admin.kill_all()
        elif kind == "reset":
            proxy.reset_all()
        elif kind == "refuse":
            proxy.refuse = True
            time.sleep(rng.uniform(0.2, 1.0))
            proxy.refuse = False
        elif kind == "latency":
            proxy.set_latency(rng.choice([0.005, 0.02, 0.1]))
            time.sleep(rng.uniform(0.3, 1.0))
            proxy.set_latency(0)
        elif kind == "blackhole":
            proxy.blackhole()
            time.sleep(rng.uniform(0.2, 1.5))
            proxy.restore(reset_stalled=rng.random() < 0.3)
        elif kind == "cut":
            proxy.cut_after(rng.randrange(0, 3000), count=rng.randint(1, 3))
        elif kind == "slow_connect":
            proxy.connect_delay = rng.uniform(0.05, 0.5)
            time.sleep(rng.uniform(0.3, 1.0))
            proxy.connect_delay = 0
    # Heal everything; let the pool recover in calm, then verify a clean period.
    proxy.cut_after(None)
    t.mark("healed")
    time.sleep(3.0)
    t.mark("verify")
    time.sleep(1.5)
    report = load.stop()
    check_load(report)

    for r in report.errors():
        assert r.exc_type is not None and issubclass(r.exc_type, ALLOWED), (r.outcome, r.error)
    assert report.longest() <= LONGEST, report.longest()
    verify = report.started_between(t["verify"])
    assert verify and all(r.outcome == "ok" for r in verify), report.error_types(verify)
    last_error = report.last_error_end()
    recovery = 0.0 if last_error is None else max(0.0, last_error - t["healed"])
    assert monitor.max_live <= MAX, monitor.max_live
    end = settle(db, admin)
    stats = db.pool.stats()
    figures(seed=seed, seconds=seconds, faults=dict(faults),
            recovery_after_heal_s=round(recovery, 3), server_max_live=monitor.max_live,
            server_max_incl_killed=monitor.max_all, connects=stats.counters.connects,
            retired_lifetime=stats.counters.retired_lifetime,
            retired_broken=stats.counters.retired_broken,
            ping_failures=stats.counters.ping_failures,
            keepalive_failures=stats.counters.keepalive_failures,
            timeouts=stats.counters.timeouts, **summary(report), **end)
