"""Operations, framework-neutral: server queries, process discovery, snapshots, metrics,
the ``pool-stats`` / ``pool-check`` reports and their command functions (:mod:`.commands`).
"""
