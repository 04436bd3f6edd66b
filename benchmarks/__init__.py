"""Side-by-side pool benchmarks (design section 6, issue 6).

``python -m benchmarks [scenario ...] [--quick | --smoke]``, from the repository root:

* S1 ``s1``/``overhead``: checkout + checkin with a fake zero-latency driver.
* S2 ``s2``/``steady``: 32 threads on a warm pool at 0 / 1 / 5 ms one-way.
* S3 ``s3``/``expiry``: 100 connections born together reach their 5 s lifetime.
* S4 ``s4``/``cold``: 50 threads on an empty pool, +200 ms per connect.
* S5 ``s5``/``outage``: the database blackholed 5 s under load.
* S6 ``s6``/``e2e``: example_app under waitress vs FlaskDB + playhouse.pool.
* ``proxy``: what the latency proxy itself costs.

Pools: ours, peewee's ``playhouse.pool``, SQLAlchemy ``QueuePool``, DBUtils ``PooledDB``,
and two no-pool ceilings (``dedicated``, ``dedicated-peewee``).  Every pool talks to the
local MariaDB through :class:`tests.support.proxy.FaultProxy` (run in a child process),
which adds the latency, connect delays and outages a loopback server lacks.  Raw results
go to ``benchmarks/results/`` (git-ignored); docs/benchmarks.md explains the figures.
"""
