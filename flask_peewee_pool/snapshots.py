"""Per-process stats snapshots (implemented in :mod:`.ops.snapshots`)."""

from .ops.snapshots import (
    DEFAULT_DIRNAME,
    DEFAULT_INTERVAL,
    SNAPSHOT_FORMAT,
    ExtensionState,
    SnapshotWriter,
    build_snapshot,
    default_stats_dir,
    describe_database,
    pid_alive,
    read_snapshots,
    snapshot_filename,
    start_snapshots,
    stats_dir_of,
    stats_interval_of,
    stop_snapshots,
    write_snapshot,
)

__all__ = ["DEFAULT_DIRNAME", "DEFAULT_INTERVAL", "SNAPSHOT_FORMAT", "ExtensionState",
           "SnapshotWriter", "build_snapshot", "default_stats_dir", "describe_database",
           "pid_alive", "read_snapshots", "snapshot_filename", "start_snapshots",
           "stats_dir_of", "stats_interval_of", "stop_snapshots", "write_snapshot"]
