"""``flask pool-stats`` / ``flask pool-check`` (:mod:`.adapters.flask_cli`); the reports
themselves are framework-neutral, in :mod:`.ops`."""

from .adapters.flask_cli import (
    EXTENSION_KEY,
    pool_check_command,
    pool_stats_command,
    register_commands,
)

__all__ = ["EXTENSION_KEY", "pool_check_command", "pool_stats_command", "register_commands"]
