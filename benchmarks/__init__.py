"""Side-by-side benchmarks: flask_peewee_pool vs playhouse.pool vs SQLAlchemy's QueuePool.

Every pool talks to MySQL/MariaDB through :class:`tests.support.proxy.FaultProxy`, which
adds the latency and connect delays a loopback server lacks, so lock contention around
network I/O becomes visible.  Run ``python -m benchmarks --help`` from the repository
root; raw results go to ``benchmarks/results/`` (git-ignored).
"""
