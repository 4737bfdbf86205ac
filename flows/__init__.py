"""Prefect flows: orchestration only. Every decision is in `certpilot.core`, every act in
`certpilot.operations` through the tasks; each flow is re-entrant over the database state.

Importing this package makes certpilot's own loggers (``certpilot.*``: the ACME client, the
deployments, the notifiers) reach the logs of the flow or task run they log in, as Prefect's own
loggers do (`_certpilot_logs_to_runs`).
"""

from __future__ import annotations

import logging


class _InRun(logging.Filter):
    """Passes records logged inside a flow or task run: outside one (the CLI, a script) there is
    no run to attach them to, and Prefect's handler would only warn about it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _certpilot_logs_to_runs() -> None:
    """Attach Prefect's API log handler to the ``certpilot`` logger, once per process, at the
    level Prefect logs at (PREFECT_LOGGING_LEVEL) unless one was set for it; the records still
    propagate to the process's console."""
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import get_current_settings

    logger = logging.getLogger("certpilot")
    if any(isinstance(h, APILogHandler) for h in logger.handlers):
        return
    handler = APILogHandler()
    handler.addFilter(_InRun())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(get_current_settings().logging.level)


_certpilot_logs_to_runs()
