"""Django tests: skipped whole when the optional ``django`` extra is not installed.

Django is configured once for this process in :mod:`tests.django._setup`, which also
provides the ``use_pool`` fixture.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("django") is None:
    collect_ignore_glob = ["test_*.py", "urls.py", "_setup.py"]
else:
    from tests.django._setup import use_pool  # noqa: F401  (a fixture)
