"""Retry policy and decorators shared by every certpilot task."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from certpilot.core.errors import is_transient

T = TypeVar("T")


def only_transient(_task, _task_run, state) -> bool:
    """Retry a task only when it failed with what `core.errors.is_transient` calls transient
    (network, rate limit, lock); the one definition of what is retried lives there."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the failure itself is what is judged
        return is_transient(exc)
    return False


def certpilot_task(fn: Callable[..., Any] | None = None, *, retries: int = 4, name: str | None = None,
                   tags: tuple[str, ...] = (), run_name: str | None = None) -> Any:
    """A certpilot task: transient-only retries with backoff + jitter, no result persistence,
    no caching (results are IDs and small summaries; anything near a key must not persist).

    Args:
        retries: how many times a transient failure is retried.
        name: the task's name (default the function's, dashed).
        tags: Prefect tags (concurrency limits by tag, filters).
        run_name: the name of each task run (default Prefect's ``<name>-<suffix>``); the
            renewal's stages name their runs after the stage, as the operator reads them.
    """

    def wrap(f: Callable[..., Any]):
        return task(
            f,
            name=name or f.__name__.replace("_", "-"),
            retries=retries,
            retry_delay_seconds=exponential_backoff(backoff_factor=2),
            retry_jitter_factor=0.2,
            retry_condition_fn=only_transient,
            persist_result=False,
            cache_policy=NO_CACHE,
            tags=list(tags),
            task_run_name=run_name,
        )

    return wrap(fn) if fn is not None else wrap


def retrying(call: Callable[[], T], *, retries: int = 4, first_delay: float = 0.5) -> T:
    """`call()` with the tasks' retry rule but no task run: a short step a flow makes itself
    (where a run starts, its claim on the work, the deployment plan), each a single short
    transaction, whose own task run would cost the orchestration server more than the step.
    A transient failure (`core.errors.is_transient`) is tried again after 0.5 s, then twice as
    long each time (jitter ±20 %, or the error's `retry_after`); anything else is raised at once.

    Raises:
        The last error, when it is not transient or `retries` were spent.
    """
    delay = first_delay
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            wait = getattr(exc, "retry_after", None) or delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter
            time.sleep(wait)
            delay *= 2
    raise AssertionError("unreachable")  # the loop returns or raises
