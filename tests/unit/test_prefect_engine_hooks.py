"""certpilot leans on three names of Prefect's flow engine to make runs cheap (flows/launch.py's
`_lighten_launched_runs`, certpilot/serving.py's `warm_process_starts`). Both fall back to
Prefect's own behaviour when a name is missing (slower, still correct); these tests fail so that
a Prefect upgrade that moves them is noticed and re-measured instead of silently losing the gain."""

from __future__ import annotations

import inspect
import multiprocessing


def test_the_engine_still_has_the_suspension_watcher_and_the_heartbeat_context_certpilot_wraps():
    import prefect.flow_engine as engine

    assert callable(getattr(engine, "observe_flow_run_suspension", None))
    beats = getattr(engine, "_send_heartbeats", None)
    assert callable(beats) and "join_on_exit" in inspect.signature(beats).parameters


def test_the_engine_still_starts_run_processes_through_its_multiprocessing_module():
    import prefect.flow_engine as engine

    source = inspect.getsource(engine.run_flow_in_subprocess)
    assert 'multiprocessing.get_context("spawn")' in source
    assert getattr(engine, "multiprocessing", None) is multiprocessing or type(engine.multiprocessing).__name__ == "_WarmStarts"


def test_lightening_leaves_runs_not_launched_here_untouched():
    """The stand-ins delegate to Prefect's own for every run the launcher did not execute."""
    import prefect.flow_engine as engine

    from flows import launch

    launch._lighten_launched_runs()
    assert getattr(engine.observe_flow_run_suspension, "certpilot_lightened", False)
    assert launch._LAUNCHED_HERE.get() is False  # outside a launch thread: Prefect's watcher and join run
