"""`tasks.common.retrying`: a flow's own short step (no task run) keeps the tasks' retry rule:
transient failures are tried again with a growing wait, anything else is raised at once."""

from __future__ import annotations

import pytest

from certpilot.core.errors import NotFoundError, TransientError
from tasks import common


def _script(*outcomes):
    calls = []

    def call():
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return call, calls


def test_a_transient_failure_is_tried_again_with_a_doubling_wait_or_the_errors_retry_after(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(common.time, "sleep", waits.append)
    monkeypatch.setattr(common.random, "uniform", lambda a, b: 1.0)
    call, calls = _script(TransientError("locked"), TransientError("rate limited", retry_after=3.0),
                          TransientError("locked"), "done")
    assert common.retrying(call) == "done"
    assert len(calls) == 4 and waits == [0.5, 3.0, 2.0]


def test_a_permanent_failure_is_raised_at_once_and_a_transient_one_after_the_last_retry(monkeypatch):
    monkeypatch.setattr(common.time, "sleep", lambda s: None)
    call, calls = _script(NotFoundError("no such certificate"))
    with pytest.raises(NotFoundError):
        common.retrying(call)
    assert len(calls) == 1
    call, calls = _script(*[TransientError("locked")] * 3)
    with pytest.raises(TransientError):
        common.retrying(call, retries=2)
    assert len(calls) == 3
