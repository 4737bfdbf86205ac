"""Launching renewal runs: many at once, without a process start per renewal.

`launch_renewals(items)` starts one `renewal` run per item (a certificate, its plan years, an
idempotency key, the run's name) in one of three modes, chosen by configuration
(`CERTPILOT_LAUNCH_MODE` or the `launch_mode` setting), never by a flow parameter:

- ``in-process`` (the single-machine default: the `renewal/renewal` deployment exists): each
  item becomes a run of that deployment created in state Pending — runners and workers poll
  Scheduled runs only, so none of them takes it — and is executed here, by `run_flow`, in a
  bounded pool of threads. Each is a top-level deployment run: it may suspend (the thread is
  released) and an answer resumes it on a runner or worker.
- ``workers`` (a fleet): the items go, in chunks, to `renewal-batch/renewal-batch` runs that
  the workers take; each batch executes its chunk in-process. A process start is paid per batch.
- ``inline`` (no deployments: tests, a one-off script): the renewal flow runs as subflows of
  the caller, in a bounded pool of threads.
- ``none`` (maintenance): nothing is launched; the scan still decides, starts managed
  applications, follows reviews and sends notices.

Every run is idempotent by its key: a second scanner, a retry or the next scan gets the same
run back. A key whose run failed, crashed or was cancelled is spent for good on the server, so
the item is launched again under `relaunch_key(key, dead run)`. Two launchers that get the same
Pending run back race to move it to the Pending sub-state ``Launching``; the server refuses the
second (PENDING -> PENDING with the same name), so one run is executed once. A run left in
Pending by a launcher that died (longer than `STALE_PENDING`) is marked Crashed and launched again.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from certpilot.core.runs import DEAD_STATES, LaunchOutcome, LaunchResult, relaunch_key
from certpilot.core.scan import RenewalLaunch
from certpilot.settings import get_settings

log = logging.getLogger("certpilot.launch")

TAG = "certpilot"
"""Every certpilot run carries this tag (the failed-run and zombie automations match it)."""
RENEWAL_DEPLOYMENT = "renewal/renewal"
BATCH_DEPLOYMENT = "renewal-batch/renewal-batch"
LAUNCHING = "Launching"
"""The Pending sub-state a launcher moves a run to before executing it (its lock)."""
STALE_PENDING = timedelta(minutes=10)
"""A run Pending this long was left by a launcher that died (a launcher executes a run within
milliseconds of creating it)."""
MAX_RELAUNCHES = 8
"""Dead runs followed under one item before giving up (each adds `:after:<id>` to the key)."""
_READ_CHUNK = 200


class LaunchMode(StrEnum):
    """How renewal runs are started (module docstring)."""

    INLINE = "inline"
    IN_PROCESS = "in-process"
    WORKERS = "workers"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class RunView:
    """What the scanner needs of a flow run: its state type, the pause key of a suspension."""

    state: str | None
    pause_key: str | None = None


def configured_mode() -> LaunchMode | None:
    """The launch mode configured (`CERTPILOT_LAUNCH_MODE`, else the `launch_mode` setting), or None.

    Raises:
        ValueError: a value that is not a `LaunchMode`.
    """
    raw = os.environ.get("CERTPILOT_LAUNCH_MODE") or get_settings().launch_mode
    if not raw:
        return None
    try:
        return LaunchMode(raw.strip().lower())
    except ValueError:
        raise ValueError(f"CERTPILOT_LAUNCH_MODE={raw!r}: use one of "
                         f"{', '.join(m.value for m in LaunchMode)}") from None


def deployment_id(name: str) -> UUID | None:
    """The id of deployment `name` ("flow/deployment") on the API, or None when it does not exist."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name).id
        except ObjectNotFound:
            return None


def launch_renewals(items: Sequence[RenewalLaunch], *, mode: LaunchMode | None = None) -> list[LaunchResult]:
    """Start one `renewal` run per item and, in-process or inline, wait for them to end or suspend.

    Args:
        items: the renewals (certificate, plan years, idempotency key, run name); one per certificate.
        mode: how (default: configured; else in-process when `renewal/renewal` is deployed on the
            API, else inline).

    Returns:
        One `LaunchResult` per item, in order (none in mode ``none``). A failing item is a
        result (`FAILED`, `ERROR`), never an exception: the others go on.
    """
    mode = mode or configured_mode()
    if not items or mode is LaunchMode.NONE:
        return []
    if mode is LaunchMode.INLINE:
        return run_inline(_renewal_flow(), items, renewal_parameters)
    if mode is LaunchMode.WORKERS:
        return hand_off(items)
    found = deployment_id(RENEWAL_DEPLOYMENT)
    if found is None and mode is None:
        return run_inline(_renewal_flow(), items, renewal_parameters)
    if found is None:
        why = f"deployment {RENEWAL_DEPLOYMENT} not found on the Prefect API: run `prefect deploy --all`"
        return [LaunchResult(i.certificate_id, i.key, LaunchOutcome.ERROR, detail=why) for i in items]
    return run_in_process(_renewal_flow(), found, items, renewal_parameters)


def renewal_parameters(item: RenewalLaunch) -> dict[str, Any]:
    """The `renewal` run's parameters for an item (ids and plain values only: they are stored)."""
    return {"certificate_id": item.certificate_id, "years": item.years}


def _renewal_flow():
    from flows.renewal import renewal

    return renewal


def _threads() -> int:
    return max(get_settings().launch_threads, 1)


# ------------------------------------------------------------------ in-process: deployment runs in threads


def run_in_process(flow: Any, deployment: UUID, items: Sequence[RenewalLaunch],
                   parameters: Callable[[RenewalLaunch], dict[str, Any]], *,
                   threads: int | None = None) -> list[LaunchResult]:
    """Create (or find, by key) a Pending run of `deployment` per item and execute it here.

    The runs are made first, one after the other (`_made`), then each is taken (`LAUNCHING`)
    and executed (`run_flow`) in a bounded pool of threads (`_launch_one`). A Prefect server on
    SQLite refuses a run creation that meets another write (`_create_run`), and executing runs
    write all the time: measured on 20, creations made while the first runs executed needed six
    tries each (119 refusals), made before them 4 refusals in all. The call returns when every
    run has ended or suspended.

    Args:
        flow: the flow object the deployment runs (executed by `run_flow`).
        deployment: the deployment's id.
        items: what to run.
        parameters: an item's flow parameters.
        threads: pool size (default the `launch_threads` setting, 8).
    """
    from prefect import get_client
    from prefect.context import SettingsContext

    settings = SettingsContext.get()

    def failed(item: RenewalLaunch, exc: Exception) -> LaunchResult:
        log.warning("launching %s (%s) failed: %s", item.name or item.certificate_id, item.key, exc)
        return LaunchResult(item.certificate_id, item.key, LaunchOutcome.ERROR, detail=_sentence(exc))

    made: list[tuple[RenewalLaunch, Any]] = []
    with get_client(sync_client=True) as client:
        for item in items:
            try:
                made.append((item, _made(client, deployment, item, parameters(item), item.key)))
            except Exception as exc:  # noqa: BLE001 - one item never stops the others
                made.append((item, failed(item, exc)))

    def one(pair: tuple[RenewalLaunch, Any]) -> LaunchResult:
        item, found = pair
        if isinstance(found, LaunchResult):
            return found
        with _fresh_context(settings):
            try:
                return _launch_one(flow, deployment, item, parameters(item), found)
            except Exception as exc:  # noqa: BLE001 - one item never stops the others
                return failed(item, exc)

    with ThreadPoolExecutor(min(threads or _threads(), len(items)), thread_name_prefix="certpilot-launch") as pool:
        return list(pool.map(one, made))


@contextmanager
def _fresh_context(settings: Any) -> Iterator[None]:
    """Only the caller's Prefect settings (API URL, auth) in this thread: no flow run context,
    so the run executed here is a top-level run, not a subflow of the launcher; and one Prefect
    client for everything the run does here (the launcher's calls, the flow and task engines,
    the result store's lookups all take the context's client).

    Cheap on purpose, every launch thread sharing one GIL: a copy of the caller's settings
    context, not a serialised one hydrated again (~0.15 s of CPU per run); one client per run
    instead of one per caller (each builds an SSL context from the system CA file, ~60 ms); no
    watcher of outside suspensions, no wait for the heartbeat thread (`_lighten_launched_runs`)."""
    from prefect.context import SyncClientContext

    _lighten_launched_runs()
    token = _LAUNCHED_HERE.set(True)
    try:
        with (settings.model_copy() if settings is not None else nullcontext()), SyncClientContext.get_or_create():
            yield
    finally:
        _LAUNCHED_HERE.reset(token)


_LAUNCHED_HERE: contextvars.ContextVar[bool] = contextvars.ContextVar("certpilot_launched_here", default=False)
_ENGINE_LOCK = threading.Lock()


def _lighten_launched_runs() -> None:
    """Two pieces of Prefect's (3.9) engine that a run executed here does not need, left out for
    those runs only (`_LAUNCHED_HERE`); every other run (the scan, runs a runner or worker
    executes) keeps them: the stand-ins delegate.

    - The watcher of a suspension asked from outside while the run executes
      (`observe_flow_run_suspension`): per run a thread running an event loop, an API client and
      an events websocket the server feeds, opened before the run's first step and closed after
      its last. A renewal run suspends itself (its forms and long reviews: `suspend_flow_run`,
      which needs no watcher) and executes for seconds.
    - The wait for the heartbeat thread at the run's end (`_send_heartbeats` joins it, and it
      sleeps in one-second steps: 0.5 s on average, up to 1 s, per run, holding a launch
      thread). The heartbeats themselves stay (the zombie automation needs them); the thread,
      told to stop, ends on its own within a second.

    Measured (bench/renew_batch.py, 20, SQLite, back to back, load 0.5-2.7): without the
    watcher 12.6-13.8 s → 10.5-12.0 s (Prefect server 9.6-10.3 → 8.0-8.8 CPU-s, serving
    5.8-6.7 → 5.0-5.6); then without the wait 10.6-12.4 s → 9.7-11.3 s.
    """
    import prefect.flow_engine as engine

    with _ENGINE_LOCK:
        watch, beats = getattr(engine, "observe_flow_run_suspension", None), getattr(engine, "_send_heartbeats", None)
        if watch is None or beats is None:
            # A Prefect without these names: its engine runs as it is (slower, correct);
            # tests/unit/test_prefect_engine_hooks.py fails so that an upgrade is looked at.
            return
        if getattr(watch, "certpilot_lightened", False):
            return

        @contextmanager
        def observe(*args: Any, **kwargs: Any) -> Iterator[None]:
            if _LAUNCHED_HERE.get():
                yield
                return
            with watch(*args, **kwargs):
                yield

        def heartbeats(run_engine: Any, join_on_exit: bool = True) -> Any:
            return beats(run_engine, join_on_exit=join_on_exit and not _LAUNCHED_HERE.get())

        observe.certpilot_lightened = True  # type: ignore[attr-defined]
        engine.observe_flow_run_suspension = observe
        engine._send_heartbeats = heartbeats


CREATE_RETRY_FIRST = 0.05
"""Seconds before retrying a run creation the server refused as busy; doubles up to 1 s."""
CREATE_RETRY_FOR = 60.0
"""How long a busy server is asked again before the creation fails (seconds)."""
_CREATING = threading.Lock()


def _create_run(client: Any, deployment: UUID, params: dict[str, Any], name: str | None, key: str) -> Any:
    """Create (or find, by its idempotency key) a Pending run of `deployment`.

    A Prefect server on SQLite answers 503 to a creation whose transaction met another writer
    (SQLITE_BUSY_SNAPSHOT: at once, its busy timeout does not apply), and Prefect's client then
    sleeps 2, 4, 8, 16 s between its retries (and 2 s even with its retries off): measured on a
    batch of 20, 30 of 50 creations answered 503 and launches waited up to 32 s. So the request
    is sent once (`_send_once`), and a busy answer retried after 50 ms, doubling up to 1 s, for
    `CREATE_RETRY_FOR` seconds (harmless: the key finds the run if it was made). This process's
    creations go one at a time (each is milliseconds of server time), so they do not collide
    with each other.

    Raises:
        PrefectHTTPStatusError: the server refused otherwise, or stayed busy.
    """
    from prefect.client.base import PrefectResponse
    from prefect.client.schemas.actions import DeploymentFlowRunCreate
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Pending, to_state_create

    body = DeploymentFlowRunCreate(parameters=params, state=to_state_create(Pending()), tags=[TAG], name=name,
                                   idempotency_key=key).model_dump(mode="json", exclude_unset=True)
    path = f"/deployments/{deployment}/create_flow_run"
    delay, deadline = CREATE_RETRY_FIRST, time.monotonic() + CREATE_RETRY_FOR
    while True:
        with _CREATING:
            response = _send_once(client, path, body)
        if response is None:  # a client this shortcut does not know: its own request and retries
            return client.create_flow_run_from_deployment(deployment, parameters=params, name=name, tags=[TAG],
                                                          idempotency_key=key, state=Pending())
        if response.status_code != 503 or time.monotonic() > deadline:
            PrefectResponse.from_httpx_response(response).raise_for_status()
            return FlowRun.model_validate(response.json())
        time.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not a secret
        delay = min(delay * 2, 1.0)


def _send_once(client: Any, path: str, body: dict[str, Any]) -> Any:
    """POST `body` to `path` once through the Prefect client's HTTP client (its base URL, auth
    and CSRF token), without its retry loop; None when the client is not the one expected."""
    import httpx

    http = getattr(client, "_client", None)
    if not isinstance(http, httpx.Client) or not callable(getattr(http, "_add_csrf_headers", None)):
        return None
    request = http.build_request("POST", path, json=body)
    http._add_csrf_headers(request)  # noqa: SLF001 - what the client's own send does first
    return httpx.Client.send(http, request)


def _made(client: Any, deployment: UUID, item: RenewalLaunch, params: dict[str, Any],
          key: str) -> tuple[Any, str] | LaunchResult:
    """The item's run found or created under `key` (a run under a dead key is followed by a new
    one under `relaunch_key`), with the key it has; or the outcome when there is nothing to
    execute here (done, live elsewhere, too many dead runs)."""
    for _ in range(MAX_RELAUNCHES):
        run = _create_run(client, deployment, params, item.name or None, key)
        kind = run.state.type.value if run.state else None
        if kind in DEAD_STATES:
            key = relaunch_key(key, str(run.id))
            continue
        if kind == "COMPLETED":
            return LaunchResult(item.certificate_id, key, LaunchOutcome.DONE, str(run.id))
        if kind != "PENDING":
            return LaunchResult(item.certificate_id, key, LaunchOutcome.LIVE, str(run.id), f"run is {kind}")
        return run, key
    return LaunchResult(item.certificate_id, key, LaunchOutcome.ERROR,
                        detail=f"{MAX_RELAUNCHES} runs under this key ended without finishing")


def _launch_one(flow: Any, deployment: UUID, item: RenewalLaunch, params: dict[str, Any],
                found: tuple[Any, str] | LaunchResult) -> LaunchResult:
    """Take the run `_made` found for the item (`LAUNCHING`) and execute it in this thread.

    The run's state is read again first: it may have waited for a thread while another launcher
    took it, ran it, and it completed or suspended; the server would accept a Pending proposal
    on such a run, so only a run still Pending is taken (the take is the lock: a second take of
    a run in `LAUNCHING` is refused).
    """
    from prefect import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        for _ in range(MAX_RELAUNCHES):
            if isinstance(found, LaunchResult):
                return found
            run, key = found
            run = client.read_flow_run(run.id)
            kind = run.state.type.value if run.state else None
            if kind in DEAD_STATES:
                found = _made(client, deployment, item, params, relaunch_key(key, str(run.id)))
                continue
            if kind == "COMPLETED":
                return LaunchResult(item.certificate_id, key, LaunchOutcome.DONE, str(run.id))
            if kind != "PENDING":
                return LaunchResult(item.certificate_id, key, LaunchOutcome.LIVE, str(run.id), f"run is {kind}")
            if _take(client, run.id):
                break
            if not _stale(run):
                return LaunchResult(item.certificate_id, key, LaunchOutcome.LIVE, str(run.id), "another launcher runs it")
            client.set_flow_run_state(run.id, Crashed(message="left Pending by a launcher that stopped; launched again"),
                                      force=True)
            found = _made(client, deployment, item, params, relaunch_key(key, str(run.id)))
        else:
            return LaunchResult(item.certificate_id, item.key, LaunchOutcome.ERROR,
                                detail=f"{MAX_RELAUNCHES} runs under this key ended without finishing")
    return _execute(flow, run, item.certificate_id, key)


def _take(client: Any, run_id: UUID) -> bool:
    """Move a Pending run to Pending/`LAUNCHING`; False when another launcher took it first."""
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Pending

    return client.set_flow_run_state(run_id, Pending(name=LAUNCHING)).status == SetStateStatus.ACCEPT


def _stale(run: Any) -> bool:
    stamp = run.state.timestamp if run.state else None
    return stamp is not None and datetime.now(UTC) - stamp > STALE_PENDING


def _execute(flow: Any, run: Any, certificate_id: str, key: str) -> LaunchResult:
    """Execute the run in this thread until it ends or suspends."""
    from prefect.exceptions import Pause
    from prefect.flow_engine import run_flow

    try:
        state = run_flow(flow, flow_run=run, return_type="state")
    except Pause:
        return LaunchResult(certificate_id, key, LaunchOutcome.SUSPENDED, str(run.id))
    except Exception as exc:  # noqa: BLE001 - the engine recorded the run's state; report and go on
        return LaunchResult(certificate_id, key, LaunchOutcome.ERROR, str(run.id), _sentence(exc))
    if state.is_completed():
        return LaunchResult(certificate_id, key, LaunchOutcome.COMPLETED, str(run.id))
    if state.is_paused():
        return LaunchResult(certificate_id, key, LaunchOutcome.SUSPENDED, str(run.id))
    return LaunchResult(certificate_id, key, LaunchOutcome.FAILED, str(run.id), state.message or state.name or "")


def _sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


# ------------------------------------------------------------------ inline: subflows in threads


def run_inline(flow: Any, items: Sequence[RenewalLaunch], parameters: Callable[[RenewalLaunch], dict[str, Any]], *,
               threads: int | None = None) -> list[LaunchResult]:
    """Run `flow` per item as a subflow of the caller (or a top-level run outside a flow), in a
    bounded pool of threads; returns when all have ended. Inline runs have no deployment: they
    cannot suspend (human steps block their thread; a long CA review ends the run and the
    scanner launches it again once the CA answered)."""

    def one(item: RenewalLaunch) -> LaunchResult:
        try:
            state = flow(**parameters(item), return_state=True)
        except Exception as exc:  # noqa: BLE001 - one item never stops the others
            return LaunchResult(item.certificate_id, item.key, LaunchOutcome.ERROR, detail=_sentence(exc))
        run_id = str(state.state_details.flow_run_id or "")
        if state.is_completed():
            return LaunchResult(item.certificate_id, item.key, LaunchOutcome.COMPLETED, run_id)
        return LaunchResult(item.certificate_id, item.key, LaunchOutcome.FAILED, run_id, state.message or "")

    with ThreadPoolExecutor(min(threads or _threads(), len(items)), thread_name_prefix="certpilot-inline") as pool:
        # Each item in its own copy of the caller's context: a subflow of the calling flow run.
        futures = [pool.submit(contextvars.copy_context().run, one, item) for item in items]
        return [f.result() for f in futures]


# ------------------------------------------------------------------ workers: renewal-batch runs


def batch_key(items: Sequence[RenewalLaunch]) -> str:
    """A renewal-batch run's idempotency key: a digest of its items' keys (order does not matter)."""
    digest = hashlib.sha256("\n".join(sorted(i.key for i in items)).encode()).hexdigest()[:24]
    return f"renewal-batch:{digest}"


def chunks(items: Sequence[RenewalLaunch], size: int) -> list[list[RenewalLaunch]]:
    """The items in chunks of at most `size`, in order."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def hand_off(items: Sequence[RenewalLaunch], *, size: int | None = None) -> list[LaunchResult]:
    """Start one `renewal-batch` deployment run per chunk of items (Scheduled: a worker takes it).

    Returns:
        Per item, HANDED_OFF with the batch run's id, or ERROR when the batch could not be created.
    """
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    results: list[LaunchResult] = []
    with get_client(sync_client=True) as client:
        try:
            batch = client.read_deployment_by_name(BATCH_DEPLOYMENT).id
        except ObjectNotFound:
            why = f"deployment {BATCH_DEPLOYMENT} not found on the Prefect API: run `prefect deploy --all`"
            return [LaunchResult(i.certificate_id, i.key, LaunchOutcome.ERROR, detail=why) for i in items]
        for chunk in chunks(items, size or max(get_settings().launch_batch_size, 1)):
            try:
                run_id = _start_batch(client, batch, chunk)
                results += [LaunchResult(i.certificate_id, i.key, LaunchOutcome.HANDED_OFF, run_id) for i in chunk]
            except Exception as exc:  # noqa: BLE001 - the other chunks go on
                results += [LaunchResult(i.certificate_id, i.key, LaunchOutcome.ERROR, detail=_sentence(exc))
                            for i in chunk]
    return results


def _start_batch(client: Any, batch: UUID, chunk: Sequence[RenewalLaunch]) -> str:
    key = batch_key(chunk)
    params = {"items": [asdict(i) for i in chunk]}
    for _ in range(MAX_RELAUNCHES):
        run = client.create_flow_run_from_deployment(batch, parameters=params, tags=[TAG], idempotency_key=key,
                                                     name=f"renewal batch of {len(chunk)}")
        if not (run.state and run.state.type.value in DEAD_STATES):
            return str(run.id)
        key = relaunch_key(key, str(run.id))
    raise RuntimeError(f"{MAX_RELAUNCHES} renewal-batch runs under one key ended without finishing")


# ------------------------------------------------------------------ what the scanner asks Prefect


def run_views(flow_run_ids: Sequence[str]) -> dict[str, RunView]:
    """The state type and pause key of these flow runs, by id (runs the API does not know, or
    ids that are not run ids, are absent)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = []
    for raw in dict.fromkeys(flow_run_ids):
        try:
            ids.append(UUID(raw))
        except (TypeError, ValueError):
            continue
    found: dict[str, RunView] = {}
    with get_client(sync_client=True) as client:
        for i in range(0, len(ids), _READ_CHUNK):
            part = ids[i:i + _READ_CHUNK]
            for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=part)),
                                             limit=len(part)):
                state = run.state
                found[str(run.id)] = RunView(state.type.value if state else None,
                                             state.state_details.pause_key if state else None)
    return found


def resume(flow_run_id: str) -> None:
    """Resume a suspended run (it goes back to Scheduled: a runner or worker serving its
    deployment executes it again from the top; its stages skip what is done).

    Raises:
        NotPausedError: the run is not paused (it was resumed meanwhile).
        RuntimeError: the server refused (the run waits for input, or its pause timed out).
    """
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(UUID(flow_run_id))


__all__ = [
    "BATCH_DEPLOYMENT", "LAUNCHING", "RENEWAL_DEPLOYMENT", "STALE_PENDING", "TAG", "LaunchMode", "RunView",
    "batch_key", "chunks", "configured_mode", "deployment_id", "hand_off", "launch_renewals", "renewal_parameters",
    "resume", "run_in_process", "run_inline", "run_views",
]
