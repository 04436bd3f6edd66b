"""Start :mod:`tests.drain.serve_child` processes for a test, and always stop them."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serving_children(count: int, env: Mapping[str, str],
                     logs: Path) -> Iterator[list[tuple[subprocess.Popen[str], int]]]:
    """``count`` children serving from their own pool, each ready (its snapshot written):
    ``[(process, pid), ...]``. Their stderr goes to ``logs/child-<i>.stderr``. Killed and
    their pipes closed on the way out, whatever happened."""
    children: list[subprocess.Popen[str]] = []
    try:
        for i in range(count):
            with open(logs / f"child-{i}.stderr", "w") as err:
                children.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.drain.serve_child"], cwd=ROOT, env=dict(env),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True))
        ready = []
        for i, child in enumerate(children):
            assert child.stdout is not None and child.stdin is not None
            line = child.stdout.readline().split()
            assert line[:1] == ["ready"], (logs / f"child-{i}.stderr").read_text()
            ready.append((child, int(line[1])))
        yield ready
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()
