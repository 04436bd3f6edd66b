"""Per-process stats snapshots: how ``flask pool-stats`` sees every process of an app.

Each process whose pool is in use writes a small JSON file, ``<pid>-<pool>.json``, into the
app's stats directory (``PEEWEE_POOL_STATS_DIR``, default
``<instance_path>/peewee_pool_stats``) at most every ``PEEWEE_POOL_STATS_INTERVAL`` seconds.
Why files: a fleet's processes share nothing by design (each has its own fork-safe pool), and
a directory of files is the one thing every process of an app on a host can see without a
home-made aggregator, a socket or a shared-memory segment (see design section 7).

Costs and guarantees:

* The file is written by a hook on the pool's maintainer thread, never on the request
  path. The hook runs every maintainer tick (~0.1 s) and returns at once until the interval
  has passed.
* A snapshot is written to a temporary file in the same directory and renamed over the old
  one (``os.replace``), so a reader sees the previous snapshot or the new one, never half.
* The directory is made ``0o700`` and the files ``0o600`` whatever the umask: pool stats
  describe the database (host, port, user), which is nobody else's business.
* Never a password: the database is described by the driver (password-free by contract)
  and by the redacted URL, and every password *field* of the document is masked before it
  is written, as a second line of defence (:mod:`..core.redaction`: by field, never by
  searching text for the password's characters).
* A process appears once its pool has been used (the maintainer starts at the first
  checkout, and its first tick writes). So a CLI command, a gunicorn ``--preload`` master
  or an import-only process never shows up as a phantom server. Call
  :func:`write_snapshot` to appear earlier.
* Files of dead processes are removed by the readers (:func:`read_snapshots`), and by the
  process itself at a normal exit. A reused pid is detected too: a snapshot records its
  process's start time (psutil, :mod:`.processes`), and a pid alive with another start
  time is a different process.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import socket
import stat
import tempfile
import threading
import time
import weakref
from typing import Any, Protocol

from ..core import forking
from ..core.pool import ConnectionPool
from ..core.redaction import redact_fields, redact_url
from .drain import DrainWatcher
from .drain import finished as drain_finished
from .processes import pid_alive, process_start

logger = logging.getLogger("flask_peewee_pool")

#: Version of the snapshot document; readers skip documents of another format.
SNAPSHOT_FORMAT = 1
#: Name of the default stats directory inside the Flask instance folder.
DEFAULT_DIRNAME = "peewee_pool_stats"
#: Seconds between two snapshots of one process when the app does not say.
DEFAULT_INTERVAL = 5.0
#: Temporary files of writers that died mid-write are removed after this many seconds.
_TEMP_GRACE = 60.0
#: While a drain is replacing connections, snapshots are written this often (at most), so
#: ``pool-drain`` sees the end of it soon; afterwards ``interval`` again.
DRAINING_INTERVAL = 0.5

_DIR_MODE = 0o700
_FILE_MODE = 0o600


class ExtensionState(Protocol):
    """What snapshots and the reports read from an integration.

    :class:`~flask_peewee_pool.integration.runtime.PoolRuntime` provides it; so can any
    object with these attributes (an app wiring a pooled database by hand, tests). The
    application's name is ``name``, or else ``app.name``.
    """

    @property
    def database(self) -> Any:
        """The pooled peewee database (``database.pool`` is the ConnectionPool)."""

    @property
    def settings(self) -> dict[str, Any]:
        """Validated, password-free settings; ``database`` holds the redacted URL."""

    @property
    def stats_dir(self) -> str | None:
        """Snapshot directory; None: ``<app.instance_path>/peewee_pool_stats``."""

    @property
    def stats_interval(self) -> float | None:
        """Seconds between snapshots; None or <= 0 switches them off."""

    @property
    def app(self) -> Any:
        """The framework's app (``app.name``, ``app.instance_path`` are used), or None."""


# ----------------------------------------------------------------------------- helpers


def default_stats_dir(app: Any) -> str:
    """``<app.instance_path>/peewee_pool_stats``: per app, outside the code, not shared."""
    return os.path.join(app.instance_path, DEFAULT_DIRNAME)


def stats_dir_of(state: ExtensionState) -> str:
    """The stats directory of an extension state (``state.stats_dir`` or the default)."""
    stats_dir = getattr(state, "stats_dir", None)
    if stats_dir:
        return os.fspath(stats_dir)
    app = getattr(state, "app", None)
    if getattr(app, "instance_path", None):
        return default_stats_dir(app)
    return ""


def snapshot_filename(pid: int, pool_name: str) -> str:
    """``<pid>-<pool name reduced to [A-Za-z0-9._-]>.json``.

    The pool name is often a database name or a SQLite path; sanitizing keeps the file in
    the stats directory whatever it contains.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", pool_name).strip("._-")[:80] or "pool"
    return f"{pid}-{safe}.json"


def describe_database(database: Any, settings: Any = None) -> dict[str, Any]:
    """A password-free description: kind, the driver's description, the redacted URL."""
    pool: ConnectionPool = database.pool
    url = None
    if isinstance(settings, dict):
        raw = settings.get("DATABASE") or settings.get("database")
        if isinstance(raw, str):
            url = redact_url(raw)
    description = {
        "kind": getattr(pool.driver, "kind", None),
        "description": pool.driver.describe(),
        "url": url,
    }
    return redact_fields(description)  # type: ignore[no-any-return]


def build_snapshot(state: ExtensionState) -> dict[str, Any]:
    """The snapshot document of this process for the extension ``state`` (no I/O)."""
    writer = _writer_for(state, create=False)
    if writer is not None:
        return writer.snapshot()
    database = state.database
    doc = _document(
        pool=database.pool,
        app_name=_app_name(state),
        database=describe_database(database, getattr(state, "settings", None)),
        interval=stats_interval_of(state) or DEFAULT_INTERVAL,
        started_at=time.time(),
    )
    return redact_fields(doc)  # type: ignore[no-any-return]


def _document(*, pool: ConnectionPool, app_name: str, database: dict[str, Any],
              interval: float, started_at: float,
              drain: dict[str, Any] | None = None) -> dict[str, Any]:
    pid = os.getpid()
    return {
        "format": SNAPSHOT_FORMAT,
        "pid": pid,
        "process_start": process_start(pid),
        "hostname": socket.gethostname(),
        "app": app_name,
        "pool": pool.name,
        "written_at": time.time(),
        "started_at": started_at,
        "interval": interval,
        "stats": pool.stats().as_dict(),
        "options": pool.options.describe(),
        "database": database,
        "drain": drain,
    }


def _app_name(state: ExtensionState) -> str:
    name = getattr(state, "name", None)
    if isinstance(name, str) and name:
        return name
    app = getattr(state, "app", None)
    return str(getattr(app, "name", None) or "app")


def stats_interval_of(state: ExtensionState) -> float | None:
    """``state.stats_interval``; ``None`` or a value <= 0 means snapshots are off."""
    value = getattr(state, "stats_interval", DEFAULT_INTERVAL)
    if value is None:
        return None
    value = float(value)
    return value if value > 0 else None


# ----------------------------------------------------------------------------- writing


def ensure_stats_dir(path: str) -> str:
    """Create the directory (and parents) if needed; make it ``0o700`` if it is ours.

    ``os.makedirs(mode=...)`` is filtered by the umask, so the mode is set explicitly.
    A directory owned by someone else is left as it is (the files are ``0o600`` anyway).
    """
    os.makedirs(path, mode=_DIR_MODE, exist_ok=True)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(path)
    owner = getattr(os, "getuid", lambda: st.st_uid)()
    if st.st_uid == owner and stat.S_IMODE(st.st_mode) != _DIR_MODE:
        os.chmod(path, _DIR_MODE)
    return path


def write_json_atomic(path: str, document: Any) -> None:
    """Write ``document`` to ``path`` atomically, readable by the owner only.

    The temporary file is made by ``mkstemp`` (``O_EXCL``, ``0o600``) in the same directory,
    named ``.<pid>-...`` so readers skip it and can clean up after a writer that died.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.getpid()}-", suffix=".tmp", dir=directory)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _FILE_MODE)
        else:  # pragma: no cover - Windows before 3.13
            os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            json.dump(document, f, separators=(",", ":"), allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class SnapshotWriter:
    """Writes one pool's snapshot; as a maintainer hook, at most every ``interval`` s.

    Holds everything it needs except the pool itself (a weak reference), so registering a
    writer never keeps a pool alive.
    """

    def __init__(self, pool: ConnectionPool, *, stats_dir: str, interval: float,
                 app_name: str, database: dict[str, Any]) -> None:
        self._pool = weakref.ref(pool)
        self.stats_dir = stats_dir
        self.interval = interval
        self.app_name = app_name
        self.database = database
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._last: float | None = None
        self._written: str | None = None
        self._written_pid = 0
        self._failing = False
        self._stopped = False
        self.started_at = time.time()
        #: Notices drain requests for this pool in ``stats_dir`` (:mod:`.drain`).
        self.watcher = DrainWatcher(stats_dir, pool.name, app_name,
                                    started_at=self.started_at)
        self._draining = False
        self._drain_failing = False

    def __repr__(self) -> str:
        return f"<SnapshotWriter {self.stats_dir!r} every {self.interval} s>"

    @property
    def pool(self) -> ConnectionPool | None:
        return self._pool()

    @property
    def path(self) -> str | None:
        """The file this process writes (None until the pool is known)."""
        pool = self.pool
        if pool is None:
            return None
        name = redact_url(pool.name) if "://" in pool.name else pool.name
        return os.path.join(self.stats_dir, snapshot_filename(os.getpid(), name))

    def __call__(self, now: float) -> None:
        """The maintainer hook: write if ``interval`` seconds passed since the last write.

        First it looks for a drain request (one ``os.stat``); a new one drains the pool and
        is written at once, then every :data:`DRAINING_INTERVAL` until no old connection
        is left. ``now`` is the pool's clock. Errors are logged once (and once on
        recovery), not every tick: an unwritable directory must not flood the log or
        disturb the pool.
        """
        if os.getpid() != self._pid:
            self.after_fork()
        drained = self._check_drain()
        period = min(self.interval, DRAINING_INTERVAL) if self._draining else self.interval
        if not drained and self._last is not None and now - self._last < period:
            return
        self._last = now
        try:
            self.write()
        except (OSError, ValueError, TypeError) as exc:
            if not self._failing:
                self._failing = True
                logger.warning("pool stats snapshot to %s failed (will keep trying every "
                               "%s s): %s", self.stats_dir, self.interval, exc)
            return
        if self._failing:
            self._failing = False
            logger.info("pool stats snapshots to %s work again", self.stats_dir)

    def _check_drain(self) -> bool:
        """Apply a new drain request for this pool; True if one was applied now."""
        pool = self.pool
        if pool is None or self._stopped:
            return False
        try:
            drained = self.watcher.poll(pool)
        except Exception as exc:  # an unreadable directory, a closed pool: not the tick's end
            if not self._drain_failing:
                self._drain_failing = True
                logger.warning("pool %r: checking %s for a drain request failed: %s",
                               pool.name, self.watcher.path, exc)
            return False
        self._drain_failing = False
        if drained:
            self._draining = True
        return drained

    def snapshot(self) -> dict[str, Any]:
        """This process's snapshot document now (no I/O)."""
        pool = self.pool
        if pool is None:
            raise RuntimeError("the pool of this snapshot writer no longer exists")
        applied = self.watcher.applied
        doc = _document(pool=pool, app_name=self.app_name, database=self.database,
                        interval=self.interval, started_at=self.started_at,
                        drain=dict(applied) if applied else None)
        return redact_fields(doc)  # type: ignore[no-any-return]

    def write(self) -> str:
        """Write the snapshot now; returns the file's path."""
        doc = self.snapshot()
        path = self.path
        assert path is not None
        with self._lock:
            if self._stopped:  # a maintainer tick that began before remove(): no file
                return path
            ensure_stats_dir(self.stats_dir)
            write_json_atomic(path, doc)
            self._written, self._written_pid = path, os.getpid()
        applied = doc.get("drain")
        if self._draining and applied and drain_finished(doc["stats"], applied):
            self._draining = False  # written with no old connection left: back to interval
        return path

    def remove(self) -> None:
        """Stop writing; delete the file this process wrote (never one its parent wrote
        before a fork)."""
        with self._lock:
            self._stopped = True
            if self._written and self._written_pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.unlink(self._written)
                self._written = None

    def after_fork(self) -> None:
        """In a forked child: a new pid, so a new file, written at the next tick."""
        self._lock = threading.Lock()  # the parent's could have been held at fork time
        self._pid = os.getpid()
        self._last = None
        self._written = None
        self._failing = False
        self.started_at = time.time()
        self.watcher.after_fork(self.started_at)
        self._draining = False


# One writer per pool, alive as long as the pool is.
_writers: weakref.WeakKeyDictionary[ConnectionPool, SnapshotWriter] = (
    weakref.WeakKeyDictionary())
_writers_lock = threading.Lock()


def _writer_for(state: ExtensionState, *, create: bool) -> SnapshotWriter | None:
    database = state.database
    pool: ConnectionPool = database.pool
    with _writers_lock:
        writer = _writers.get(pool)
        if writer is None and create:
            writer = SnapshotWriter(
                pool,
                stats_dir=stats_dir_of(state),
                interval=stats_interval_of(state) or DEFAULT_INTERVAL,
                app_name=_app_name(state),
                database=describe_database(database, getattr(state, "settings", None)),
            )
            _writers[pool] = writer
    return writer


def start_snapshots(state: ExtensionState) -> SnapshotWriter | None:
    """Write this process's snapshot from the pool's maintainer, every ``stats_interval``.

    Called by the extension's ``init_app``. Writes nothing yet: the first snapshot comes
    with the maintainer's first tick, i.e. when the pool is first used. Returns the writer,
    or None when ``stats_interval`` is None or <= 0 (snapshots switched off). Idempotent.
    """
    if stats_interval_of(state) is None:
        return None
    writer = _writer_for(state, create=True)
    assert writer is not None
    hooks = state.database.pool.tick_hooks  # kept by the pool across fork()
    if writer not in hooks:
        hooks.append(writer)
    return writer


def stop_snapshots(state: ExtensionState) -> None:
    """Stop writing this process's snapshot and delete its file."""
    pool = state.database.pool
    with _writers_lock:
        writer = _writers.pop(pool, None)
    if writer is None:
        return
    with contextlib.suppress(ValueError):
        pool.tick_hooks.remove(writer)
    writer.remove()


def write_snapshot(state: ExtensionState) -> str:
    """Write this process's snapshot now (startup, tests); returns the file's path.

    Registers the process's writer if needed so the file is removed at exit.
    """
    writer = _writer_for(state, create=True)
    assert writer is not None
    return writer.write()


# ----------------------------------------------------------------------------- reading


def read_snapshots(
    stats_dir: str | os.PathLike[str], *, prune: bool = True
) -> list[dict[str, Any]]:
    """Every live process's snapshot in ``stats_dir``, sorted by (hostname, pid).

    A snapshot from this host whose process is gone (or whose pid now belongs to another
    process) is skipped and, with ``prune``, deleted. Corrupt or foreign files are skipped;
    corrupt ones and temporary files left by a writer that died are deleted once their
    process is gone and they are a minute old. Snapshots from other hosts (a shared
    directory) cannot be checked and are returned; readers flag them by age.
    """
    directory = os.fspath(stats_dir)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    host = socket.gethostname()
    found: list[dict[str, Any]] = []
    for name in sorted(names):
        path = os.path.join(directory, name)
        if name.startswith("."):
            if prune and name.endswith(".tmp"):
                _remove_orphan(path, _leading_pid(name[1:]))
            continue
        if not name.endswith(".json"):
            continue
        snap = _load(path)
        if snap is None:
            if prune:
                _remove_orphan(path, _leading_pid(name))
            continue
        if snap.get("hostname") == host and not _same_process_alive(snap):
            if prune:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            continue
        found.append(snap)
    found.sort(key=lambda s: (str(s.get("hostname")), s["pid"], str(s.get("pool"))))
    return found


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            snap = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if (
        not isinstance(snap, dict)
        or snap.get("format") != SNAPSHOT_FORMAT
        or not isinstance(snap.get("pid"), int)
        or isinstance(snap.get("pid"), bool)
        or not isinstance(snap.get("stats"), dict)
    ):
        return None
    return snap


def _same_process_alive(snap: dict[str, Any]) -> bool:
    pid = snap["pid"]
    if not pid_alive(pid):
        return False
    recorded = snap.get("process_start")
    if recorded is None:
        return True
    current = process_start(pid)
    return current is None or current == recorded


def _leading_pid(name: str) -> int | None:
    match = re.match(r"(\d+)-", name)
    return int(match.group(1)) if match else None


def _remove_orphan(path: str, pid: int | None) -> None:
    """Delete a file no live writer can own: its pid is gone and it is old enough."""
    if pid is None or pid_alive(pid):
        return
    with contextlib.suppress(OSError):
        if time.time() - os.stat(path).st_mtime >= _TEMP_GRACE:
            os.unlink(path)


# ----------------------------------------------------------------------------- process events


def _writers_after_fork() -> None:
    """In a forked child: every writer takes the new pid (and a fresh lock) at once.

    The hooks themselves survive the fork: they live in ``pool.tick_hooks``, which the
    Maintainer the child builds for itself runs. The child's first tick writes its file.
    """
    global _writers_lock
    _writers_lock = threading.Lock()  # another thread may have held it at fork time
    for writer in list(_writers.values()):
        writer.after_fork()


def _remove_files_at_exit() -> None:
    for writer in list(_writers.values()):
        writer.remove()


atexit.register(_remove_files_at_exit)
forking.register(forking.SERVICES, after_in_child=_writers_after_fork)
