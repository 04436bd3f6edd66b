"""A real RQ worker process running 8 :class:`PooledSimpleWorker` loops in threads.

RQ runs one job at a time per worker; to get concurrency above the pool's cap inside one
process (one pool), this process runs 8 RQ workers on 8 threads, sharing the pool
(``FPP_JOBS_CAP``). Each is RQ's own ``SimpleWorker`` work loop in burst mode; only
what cannot run off the main thread is changed: no signal handlers, a timer (not
``SIGALRM``) enforces ``job_timeout``, and no pubsub listener for remote commands (see
``rq_fork_worker``). Prints the pool's stats (JSON) when every loop ends.

    python -m tests.jobs.rq_threads REDIS_URL QUEUE THREADS
"""

from __future__ import annotations

import json
import sys
import threading

import redis
from rq import Queue
from rq.timeouts import TimerDeathPenalty

from flask_peewee_pool.jobs.rq import JobConnections, PooledSimpleWorker

from . import workload


class ThreadedWorker(PooledSimpleWorker):
    connections = JobConnections(workload.db)
    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass  # signal.signal() works on the main thread only

    def subscribe(self) -> None:
        # No remote-command listener (rq's pubsub thread): with redis-py 8 its stop() at
        # teardown can wait out the listener's 60 s poll when it races the subscription.
        pass


def main(redis_url: str, queue: str, threads: int) -> None:
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            conn = redis.Redis.from_url(redis_url)
            ThreadedWorker([Queue(queue, connection=conn)], connection=conn).work(
                burst=True, logging_level="WARNING")
        except BaseException as exc:  # reported below, so the test sees it
            errors.append(exc)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({"errors": [repr(e) for e in errors],
                      "stats": workload.db.obj.pool.stats().as_dict()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
