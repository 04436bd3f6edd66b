"""The fork registry runs every module's at-fork work in its stated order."""

from __future__ import annotations

import os
import sys

import pytest

from flask_peewee_pool.core import forking

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32",
                                reason="needs fork()")


def test_stages_run_in_order_whatever_the_registration_order() -> None:
    calls: list[str] = []
    funcs = []
    # Registered services first, pools last: the stated order must still hold.
    for stage in reversed(forking.STAGES):
        def before(stage: str = stage) -> None:
            calls.append(f"before:{stage}")

        def parent(stage: str = stage) -> None:
            calls.append(f"parent:{stage}")

        def child(stage: str = stage) -> None:
            calls.append(f"child:{stage}")

        forking.register(stage, before=before, after_in_parent=parent, after_in_child=child)
        funcs += [before, parent, child]
    read, write = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: report its order through the pipe, exit at once
            os.write(write, ",".join(c for c in calls if c.startswith("child:")).encode())
            os._exit(0)
        os.close(write)
        write = -1
        child_calls = os.read(read, 4096).decode().split(",")
        os.waitpid(pid, 0)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
        for func in funcs:
            forking.unregister(func)
    assert child_calls == [f"child:{s}" for s in forking.STAGES]
    assert [c for c in calls if c.startswith("before:")] == [
        f"before:{s}" for s in reversed(forking.STAGES)]
    assert [c for c in calls if c.startswith("parent:")] == [
        f"parent:{s}" for s in forking.STAGES]


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Only this test's callbacks: the real ones (metrics takes a lock before fork) stay out.
    monkeypatch.setattr(forking, "_callbacks", {
        stage: {"before": [], "after_in_parent": [], "after_in_child": []}
        for stage in forking.STAGES})
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    def fine() -> None:
        calls.append("fine")

    forking.register(forking.SERVICES, before=broken)
    forking.register(forking.SERVICES, before=fine)
    forking._before()
    assert calls == ["fine"]
    assert "boom" in caplog.text


def test_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="stage must be one of"):
        forking.register("later", before=lambda: None)
