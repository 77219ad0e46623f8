"""``LocalWorkflowStep``: ``step.do``, ``step.sleep`` and ``step.wait_for_event``, memoized.

This is the ``step`` a workflow's ``run(event, step)`` receives from
:class:`~helix_lab.workflows.LocalWorkflowBinding`. It follows Cloudflare's rules:

- A step's result is stored under ``(name, count)``. When ``run`` is replayed (after a
  crash, a pause, a restart), a stored step returns its result without running again.
  A replay is a lookup in a dict loaded once per run, so it costs O(1) per step.
- Results must be JSON and at most 1 MiB; both are checked before anything is stored,
  and the step then fails without retrying (a retry would return the same thing).
- A failing step is retried per its ``WorkflowStepConfig``; each attempt has a timeout.
  :class:`~helix_lab.workflows.errors.NonRetryableError` skips the retries.
- Code outside steps runs again on every replay: keep side effects inside steps.

Both spellings work::

    result = await step.do("fetch", fetch)              # the seed's (TypeScript) form

    @step.do("fetch", config={"retries": {"limit": 2}}) # the Python Workflows SDK form
    async def fetch():
        ...
    result = await fetch()

With the decorator, a parameter named like an earlier decorated step receives that step's
result, and a parameter named ``ctx`` receives ``{"attempt": n}``, as in the Python SDK.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..errors import UserError
from .config import (
    DEFAULT_EVENT_TIMEOUT,
    MAX_PAYLOAD_BYTES,
    MAX_STEP_NAME,
    WorkflowDuration,
    WorkflowStepConfig,
    parse_duration,
    retry_plan,
)
from .errors import (
    NonDeterministicStepNameWarning,
    NonRetryableError,
    StepResultNotJSONError,
    StepResultTooLargeError,
    WorkflowTimeoutError,
)
from .store import StepRow, WorkflowStore


class _LiveInstance(Protocol):
    """What a step needs of its instance's live task (the binding's ``_LiveInstance``)."""

    store: WorkflowStore
    instance_id: str

    def log(self, level: str, message: str) -> None: ...

    async def before_step(self) -> None: ...

    def on_retry(self, row: StepRow, exc: BaseException) -> None: ...

    def set_waiting(self, waiting: bool) -> None: ...

    def event_signal(self) -> asyncio.Event: ...

__all__ = ["LocalWorkflowStep", "encode_result"]


def encode_result(value: Any, what: str, *, limit: int | None = MAX_PAYLOAD_BYTES) -> str:
    """``value`` as the JSON that is stored, or a clear error saying why it cannot be."""
    try:
        text = json.dumps(to_jsonable_python(value))
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise StepResultNotJSONError(
            f"{what} is of type {type(value).__name__}, which cannot be stored: it must be "
            f"JSON (str, numbers, lists, dicts or pydantic models) ({exc}).") from None
    size = len(text.encode())
    if limit is not None and size > limit:
        raise StepResultTooLargeError(
            f"{what} is {size:,} bytes of JSON, over Cloudflare Workflows' limit of "
            f"{limit:,} bytes (1 MiB) per step result. Store large data elsewhere (D1, R2) "
            "and return its key from the step.")
    return text


class LocalWorkflowStep:
    """The ``step`` object of one pass of ``run`` over one instance."""

    def __init__(self, live: _LiveInstance) -> None:
        self._live = live
        self._store = live.store
        self._instance_id = live.instance_id
        rows = self._store.steps(live.instance_id)
        self._stored = {(r.name, r.count): r for r in rows}
        self._by_position = {r.position: r for r in rows}
        self._counts: dict[str, int] = {}
        self._position = max((r.position for r in rows), default=0)
        self._next_position = 0
        self._declared: dict[str, Any] = {}
        self.memoized = 0
        """Steps of this pass answered from storage."""
        self.executed = 0

    # -- keys ---------------------------------------------------------------------------

    def _key(self, name: Any) -> tuple[str, int, int]:
        if not isinstance(name, str) or not name:
            raise UserError(f"A step name must be a non-empty string, got {name!r}.")
        if len(name) > MAX_STEP_NAME:
            raise UserError(f"Step name {name[:40]!r}... is {len(name)} characters; Cloudflare "
                            f"allows at most {MAX_STEP_NAME}.")
        count = self._counts.get(name, 0) + 1
        self._counts[name] = count
        self._next_position += 1
        return name, count, self._next_position

    def _check_deterministic(self, name: str, count: int, position: int) -> None:
        before = self._by_position.get(position)
        if before is not None and (before.name, before.count) != (name, count):
            message = (
                f"Step {name!r} (call {count}) is new at position {position}, where the "
                f"previous run of instance {self._instance_id!r} had step {before.name!r}. "
                "Step names are the cache key of their results (Cloudflare's 'Rules of "
                "Workflows'): build them only from the input and earlier step results, "
                "never from the clock or randomness, or the step runs again on replay.")
            warnings.warn(message, NonDeterministicStepNameWarning, stacklevel=4)
            self._live.log("warning", message)

    async def _enter(self, name: Any, type_: str) -> tuple[str, StepRow]:
        """The step's name and row. A ``done`` row is answered from storage (and counted);
        any other one is checked against the last run and waits until the instance may
        go on (it is not paused)."""
        name, count, position = self._key(name)
        row = self._stored.get((name, count))
        if row is None:
            row = StepRow(name, count, type_, position, "running", None, None, 0, None)
        if row.state == "done":
            self.memoized += 1
        else:
            self._check_deterministic(name, count, position)
            await self._live.before_step()
        return name, row

    # -- step.do ------------------------------------------------------------------------

    def do(self, name: Any = None, callback: Callable[..., Any] | None = None, *,
           config: WorkflowStepConfig | dict[str, Any] | None = None,
           concurrent: bool = False) -> Any:
        """Run ``callback`` as a memoized step, or decorate a step function (see module)."""
        if callable(name) and callback is None:  # bare @step.do
            return self._decorate(name.__name__, config)(name)
        if callback is None:
            return self._decorate(name, config)
        return self._do(name, callback, config, {})

    def _decorate(self, name: str | None, config: Any) -> Callable[[Callable[..., Any]], Any]:
        def decorator(fn: Callable[..., Any]) -> Callable[[], Awaitable[Any]]:
            step_name = name or fn.__name__
            params = list(inspect.signature(fn).parameters)

            @functools.wraps(fn)
            async def run_step() -> Any:
                missing = [p for p in params if p != "ctx" and p not in self._declared]
                if missing:
                    raise UserError(f"Step {step_name!r} takes {', '.join(missing)}, but no "
                                    "earlier step function has that name.")
                kwargs = {p: self._declared[p] for p in params if p != "ctx"}
                result = await self._do(step_name, fn, config, kwargs,
                                        wants_ctx="ctx" in params)
                self._declared[fn.__name__] = result
                return result

            return run_step

        return decorator

    async def _do(self, name: Any, fn: Callable[..., Any], config: Any,
                  kwargs: dict[str, Any], *, wants_ctx: bool = False) -> Any:
        plan = retry_plan(config)
        name, row = await self._enter(name, "do")
        if row.state == "done":
            return json.loads(row.result or "null")
        self.executed += 1
        what = f"The result of step {name!r}"
        failures = 0
        while True:
            row.attempts += 1
            row.state, row.error = "running", None
            self._store.put_step(self._instance_id, row)
            try:
                args = {**kwargs, **({"ctx": {"attempt": row.attempts}} if wants_ctx else {})}
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that
                # lands as the step finishes, and a terminated instance would run on.
                async with asyncio.timeout(plan.timeout):
                    value = await _call(fn, args)
                text = encode_result(value, what)
            except asyncio.CancelledError:
                raise
            except (NonRetryableError, StepResultTooLargeError, StepResultNotJSONError) as exc:
                self._fail(row, exc)
                raise
            except Exception as exc:
                failures += 1
                if isinstance(exc, TimeoutError):
                    exc = WorkflowTimeoutError(
                        f"Step {name!r} attempt {row.attempts} ran past its timeout of "
                        f"{plan.timeout:g} s.")
                if failures > plan.limit:
                    self._fail(row, exc)
                    raise exc from None
                row.error = f"{type(exc).__name__}: {exc}"
                self._store.put_step(self._instance_id, row)
                self._live.on_retry(row, exc)
                await asyncio.sleep(plan.delay_before(failures + 1))
                continue
            row.state, row.result, row.error = "done", text, None
            self._store.put_step(self._instance_id, row)
            return json.loads(text)

    def _fail(self, row: StepRow, exc: BaseException) -> None:
        row.state, row.error = "failed", f"{type(exc).__name__}: {exc}"
        self._store.put_step(self._instance_id, row)

    # -- step.sleep ---------------------------------------------------------------------

    async def sleep(self, name: str, duration: WorkflowDuration) -> None:
        """Sleep durably: a replay after the wake-up time does not sleep again."""
        await self._sleep(name, lambda: time.time() + parse_duration(duration, "sleep"))

    async def sleep_until(self, name: str, timestamp: Any) -> None:
        """Sleep until a ``datetime`` or a UNIX time in milliseconds."""
        wake = timestamp.timestamp() if hasattr(timestamp, "timestamp") else timestamp / 1000
        await self._sleep(name, lambda: float(wake))

    async def _sleep(self, name: str, wake_at: Callable[[], float]) -> None:
        name, row = await self._enter(name, "sleep")
        if row.state == "done":
            return
        if row.wake_at is None:
            row.wake_at, row.state, row.attempts = wake_at(), "sleeping", 1
            self._store.put_step(self._instance_id, row)
        self._live.set_waiting(True)
        try:
            await asyncio.sleep(max(0.0, row.wake_at - time.time()))
        finally:
            self._live.set_waiting(False)
        row.state = "done"
        self._store.put_step(self._instance_id, row)

    # -- step.wait_for_event ------------------------------------------------------------

    async def wait_for_event(self, name: str, *, type: str,
                             timeout: WorkflowDuration = DEFAULT_EVENT_TIMEOUT) -> dict[str, Any]:
        """Wait for ``instance.send_event(type, payload)``; ``{"type", "payload", "timestamp"}``.

        Events sent before the wait are kept and taken in order. After ``timeout`` it
        raises :class:`~helix_lab.workflows.errors.WorkflowTimeoutError`."""
        name, row = await self._enter(name, "waitForEvent")
        if row.state == "done":
            return json.loads(row.result or "null")
        if row.wake_at is None:  # the deadline is stored, so a replay keeps it
            row.wake_at = time.time() + parse_duration(timeout, "timeout")
            row.state, row.attempts = "waiting", 1
            self._store.put_step(self._instance_id, row)
        while True:
            signal = self._live.event_signal()
            event = self._store.take_event(self._instance_id, type, row)
            if event is not None:
                return event
            remaining = row.wake_at - time.time()
            if remaining <= 0:
                error = WorkflowTimeoutError(
                    f"wait_for_event {name!r} got no {type!r} event within its timeout.")
                self._fail(row, error)
                raise error
            self._live.set_waiting(True)
            try:
                async with asyncio.timeout(remaining):
                    await signal.wait()
            except TimeoutError:
                pass
            finally:
                self._live.set_waiting(False)


async def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
