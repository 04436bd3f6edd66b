"""One CLI command run through Flask's ``flask`` group and through Django's
``call_command``, for the tests that hold both to the same output (tests/runtime,
tests/drain)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import Any


def run_flask(app: Any, args: list[str]) -> tuple[int, str, str]:
    """``flask <args>`` in-process: (exit code, stdout, stderr)."""
    result = app.test_cli_runner().invoke(args=args)
    return result.exit_code, result.stdout, result.stderr


def run_django(args: list[str]) -> tuple[int, str, str]:
    """``manage.py <args>`` in-process (``pool-drain`` -> ``pool_drain``): (exit code,
    stdout, stderr)."""
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(args[0].replace("-", "_"), *args[1:], stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def masked(text: str, volatile: Iterable[tuple[re.Pattern[str], str]]) -> str:
    """``text`` with what changes from run to run replaced (pattern, replacement)."""
    for pattern, replacement in volatile:
        text = pattern.sub(replacement, text)
    return text
