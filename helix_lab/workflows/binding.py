"""``LocalWorkflowBinding``: Cloudflare's Workflows binding, emulated in this process.

::

    binding = LocalWorkflowBinding(run, storage=".helix/workflows.sqlite3")
    instance = await binding.create(id="order-1", params={"item": "otter"})
    await instance.status()      # {"status": "running", "error": None, "output": None}
    await instance.send_event("approval", {"ok": True})
    await instance.pause(); await instance.resume()
    await instance.restart({"from": {"name": "charge", "count": 1, "type": "do"}})
    await instance.terminate()

``run`` is ``async def run(event, step)`` or a ``WorkflowEntrypoint`` subclass (built
with ``(ctx, env)``, its ``run`` called). Each live instance is a task on the running
event loop; everything it must remember (status, step results, events) is in SQLite.

Recovery: an instance found ``running`` (or ``queued``, ``waiting``) with no live task,
because its host died, is continued by the first ``get`` or ``create_batch`` that touches
it, or by :meth:`LocalWorkflowBinding.recover`. ``run`` is replayed from the top, and
every step that had finished returns its stored result without running again.

Statuses are Cloudflare's: ``queued``, ``running``, ``paused``, ``waitingForPause``,
``waiting`` (in ``sleep`` or ``wait_for_event``), ``complete``, ``errored``,
``terminated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequestError, ConflictError, NotFoundError
from ..runtime.sql import SqliteStorage, SqlStorage
from .config import MAX_PAYLOAD_BYTES
from .errors import StepResultNotJSONError, StepResultTooLargeError
from .step import LocalWorkflowStep, encode_result
from .store import StepRow, WorkflowStore

__all__ = ["FINISHED", "LocalWorkflowBinding", "LocalWorkflowInstance", "WorkflowEvent"]

FINISHED = frozenset({"complete", "errored", "terminated"})
_LIVE = ("queued", "running", "waiting", "waitingForPause")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")


@dataclass
class WorkflowEvent:
    """What ``run`` receives: the params given to ``create``, and when and for whom."""

    payload: Any
    timestamp: int
    instance_id: str

    def __getitem__(self, key: str) -> Any:  # event["payload"], as from JavaScript
        return {"payload": self.payload, "timestamp": self.timestamp,
                "instanceId": self.instance_id, "instance_id": self.instance_id}[key]


class _LiveInstance:
    """The running task of one instance and the signals its steps wait on."""

    def __init__(self, binding: LocalWorkflowBinding, instance_id: str) -> None:
        self.binding = binding
        self.store = binding.store
        self.instance_id = instance_id
        self.task: asyncio.Task[None] | None = None
        self.stop: str | None = None
        """``terminate`` or ``restart`` when the task is being cancelled on purpose."""
        self.pause_requested = False
        self.resumed = asyncio.Event()
        self._signal = asyncio.Event()
        self.last_step: LocalWorkflowStep | None = None

    def log(self, level: str, message: str) -> None:
        logger = self.binding.logger
        if logger is not None:
            getattr(logger, level, logger.info)(message)

    def event_signal(self) -> asyncio.Event:
        """An event set by the next ``send_event``; take it before checking storage."""
        if self._signal.is_set():
            self._signal = asyncio.Event()
        return self._signal

    def notify(self) -> None:
        self._signal.set()

    def set_waiting(self, waiting: bool) -> None:
        status = self.store.instance(self.instance_id)["status"]
        if waiting and status == "running":
            self.store.set_status(self.instance_id, "waiting")
        elif not waiting and status == "waiting":
            self.store.set_status(self.instance_id, "running")

    async def before_step(self) -> None:
        """A step is about to run: stop here first if a pause was asked for."""
        if not self.pause_requested:
            return
        self.store.set_status(self.instance_id, "paused")
        self.resumed.clear()
        await self.resumed.wait()
        self.store.set_status(self.instance_id, "running")

    def on_retry(self, row: StepRow, exc: BaseException) -> None:
        hook = self.binding.on_retry
        if hook is not None:
            hook(self.instance_id, row, exc)


class LocalWorkflowInstance:
    """A handle on one instance; cheap, like Cloudflare's (``binding.get(id)``)."""

    def __init__(self, binding: LocalWorkflowBinding, instance_id: str) -> None:
        self._binding = binding
        self.id = instance_id

    def __repr__(self) -> str:
        return f"<LocalWorkflowInstance {self.id!r}>"

    def _row(self) -> dict[str, Any]:
        row = self._binding.store.instance(self.id)
        if row is None:  # only if the storage was replaced under us
            raise NotFoundError(f"Workflow instance {self.id!r} does not exist.",
                                code="instance_not_found")
        return row

    async def status(self) -> dict[str, Any]:
        """``{"status", "error", "output"}`` as Cloudflare reports them."""
        row = self._row()
        return {"status": row["status"],
                "error": json.loads(row["error"]) if row["error"] else None,
                "output": json.loads(row["output"]) if row["output"] else None}

    async def steps(self) -> list[dict[str, Any]]:
        """Every stored step, in the order the instance reached them."""
        return [r.to_json() for r in self._binding.store.steps(self.id)]

    async def pause(self) -> None:
        """Pause at the next step boundary (``waitingForPause`` until it gets there)."""
        status = self._row()["status"]
        if status in FINISHED:
            raise ConflictError(f"Workflow instance {self.id!r} is {status}; only a live "
                                "instance can be paused.", code="instance_finished")
        if status == "paused":
            return
        live = self._binding._live.get(self.id)
        if live is None:
            self._binding.store.set_status(self.id, "paused")
            return
        live.pause_requested = True
        self._binding.store.set_status(self.id, "waitingForPause")

    async def resume(self) -> None:
        """Continue a paused instance."""
        status = self._row()["status"]
        if status not in ("paused", "waitingForPause"):
            raise ConflictError(f"Workflow instance {self.id!r} is {status}, not paused; only "
                                "a paused instance can be resumed.", code="not_paused")
        live = self._binding._live.get(self.id)
        if live is None:
            self._binding.store.set_status(self.id, "running")
            self._binding._start(self.id)
            return
        live.pause_requested = False
        if status == "waitingForPause":
            self._binding.store.set_status(self.id, "running")
        live.resumed.set()

    async def terminate(self) -> None:
        """Stop the instance for good; status ``terminated``."""
        status = self._row()["status"]
        if status in FINISHED:
            raise ConflictError(f"Workflow instance {self.id!r} is already {status}.",
                                code="instance_finished")
        await self._binding._cancel(self.id, "terminate")
        self._binding.store.set_status(self.id, "terminated")

    async def restart(self, options: dict[str, Any] | None = None, *,
                      from_: dict[str, Any] | None = None) -> None:
        """Run the instance again: from the start, or from one step (``{"from": {...}}``).

        Steps before the ``from`` step keep their stored results; it and every later step
        run again. ``from`` is ``{"name", "count"?: 1, "type"?: "do"|"sleep"|"waitForEvent"}``.
        """
        self._row()
        target = from_ if from_ is not None else (options or {}).get("from")
        store = self._binding.store
        position = 1
        if target is not None:
            position = self._position_of(target)
        await self._binding._cancel(self.id, "restart")
        store.delete_steps_from(self.id, position)
        store.set_status(self.id, "queued")
        self._binding._start(self.id)

    def _position_of(self, target: dict[str, Any]) -> int:
        if not isinstance(target, dict) or not isinstance(target.get("name"), str):
            raise BadRequestError("restart's 'from' must be {'name': ..., 'count'?: n, "
                                  "'type'?: 'do'|'sleep'|'waitForEvent'}.", code="bad_request", details={"field": "from"})
        count = target.get("count", 1)
        for row in self._binding.store.steps(self.id):
            if (row.name == target["name"] and row.count == count
                    and target.get("type", row.type) == row.type):
                return row.position
        raise NotFoundError(f"Workflow instance {self.id!r} has no step {target['name']!r} "
                            f"(call {count}) to restart from.", code="step_not_found")

    async def send_event(self, type: str | dict[str, Any], payload: Any = None) -> None:
        """Deliver an event to ``wait_for_event(type=...)``, now or when the instance gets there."""
        if isinstance(type, dict):  # sendEvent({type, payload})
            type, payload = type.get("type"), type.get("payload")
        if not isinstance(type, str) or not _EVENT_TYPE.match(type):
            raise BadRequestError(f"Event type {type!r} is not valid: use letters, digits, "
                                  "'_' and '-' (at most 100).", code="bad_request", details={"field": "type"})
        status = self._row()["status"]
        if status in FINISHED:
            raise ConflictError(f"Workflow instance {self.id!r} is {status}: it takes no more "
                                "events.", code="instance_finished")
        try:
            text = encode_result(payload, f"The payload of event {type!r}",
                                 limit=MAX_PAYLOAD_BYTES)
        except (StepResultNotJSONError, StepResultTooLargeError) as exc:
            raise BadRequestError(str(exc), code="bad_request", details={"field": "payload"}) from None
        self._binding.store.add_event(self.id, type, text)
        live = self._binding._live.get(self.id)
        if live is not None:
            live.notify()

    async def wait(self) -> dict[str, Any]:
        """Until the instance finishes, pauses or its task ends; then its status."""
        live = self._binding._live.get(self.id)
        if live is not None and live.task is not None:
            await asyncio.wait({live.task})
        return await self.status()


class LocalWorkflowBinding:
    """One Workflow (``[[workflows]]`` binding) and its instances, on a SQLite file."""

    def __init__(self, workflow: Any, storage: str | os.PathLike[str] | SqlStorage = ":memory:",
                 *, env: Any = None, logger: Any = None,
                 on_retry: Callable[[str, StepRow, BaseException], None] | None = None) -> None:
        self.workflow = workflow
        self.env = env if env is not None else {}
        self.logger = logger
        self.on_retry = on_retry
        self._owns_sql = not isinstance(storage, SqlStorage)
        self.sql: SqlStorage = (SqliteStorage(storage) if self._owns_sql  # type: ignore[arg-type]
                                else storage)  # type: ignore[assignment]
        self.store = WorkflowStore(self.sql)
        self._live: dict[str, _LiveInstance] = {}

    async def create(self, id: str | None = None, params: Any = None) -> LocalWorkflowInstance:
        """Create and start an instance; a taken id is a 409."""
        instance_id = id if id is not None else secrets.token_hex(16)
        if not isinstance(instance_id, str) or not _ID.match(instance_id):
            raise BadRequestError(f"Instance id {instance_id!r} is not valid: use letters, "
                                  "digits, '_' and '-' (at most 100).", code="bad_request", details={"field": "id"})
        try:
            text = encode_result(params, "The params", limit=MAX_PAYLOAD_BYTES)
        except (StepResultNotJSONError, StepResultTooLargeError) as exc:
            raise BadRequestError(str(exc), code="bad_request", details={"field": "params"}) from None
        if not self.store.insert_instance(instance_id, text):
            raise ConflictError(f"A workflow instance with id {instance_id!r} already exists.",
                                code="instance_exists")
        self._start(instance_id)
        return LocalWorkflowInstance(self, instance_id)

    async def create_batch(self, batch: list[dict[str, Any]]) -> list[LocalWorkflowInstance]:
        return [await self.create(id=b.get("id"), params=b.get("params")) for b in batch]

    async def get(self, id: str) -> LocalWorkflowInstance:
        """The instance ``id`` (404 if unknown); a live one whose host died continues."""
        row = self.store.instance(id) if isinstance(id, str) else None
        if row is None:
            raise NotFoundError(f"There is no workflow instance {id!r}. Create it with "
                                "binding.create(id=..., params=...).", code="instance_not_found")
        if row["status"] in _LIVE and id not in self._live:
            self._start(id)
        return LocalWorkflowInstance(self, id)

    def recover(self) -> list[str]:
        """Continue every instance whose host died; returns their ids."""
        ids = [i for i in self.store.instance_ids(_LIVE) if i not in self._live]
        for instance_id in ids:
            self._start(instance_id)
        return ids

    def live_step(self, instance_id: str) -> LocalWorkflowStep | None:
        """The ``step`` of the instance's current pass (for inspection)."""
        live = self._live.get(instance_id)
        return live.last_step if live is not None else None

    # -- running ------------------------------------------------------------------------

    def _start(self, instance_id: str) -> None:
        live = _LiveInstance(self, instance_id)
        self._live[instance_id] = live
        live.task = asyncio.get_running_loop().create_task(self._run(live))

    async def _cancel(self, instance_id: str, why: str) -> None:
        live = self._live.get(instance_id)
        if live is None or live.task is None:
            return
        live.stop = why
        live.task.cancel()
        await asyncio.wait({live.task})

    async def _run(self, live: _LiveInstance) -> None:
        store, instance_id = self.store, live.instance_id
        row = store.instance(instance_id)
        assert row is not None
        if row["status"] == "queued":
            store.set_status(instance_id, "running")
        event = WorkflowEvent(json.loads(row["params"]), row["created_at"], instance_id)
        step = LocalWorkflowStep(live)
        live.last_step = step
        try:
            output = await self._call_run(event, step)
            text = encode_result(output, "The output of run()", limit=None)
        except asyncio.CancelledError:
            if live.stop is None:
                raise  # the host is shutting down: the next access continues the instance
            return
        except Exception as exc:
            error = {"name": type(exc).__name__, "message": str(exc)}
            store.set_status(instance_id, "errored", error=json.dumps(error))
            live.log("warning", f"workflow instance {instance_id} errored: {error['message']}")
            return
        finally:
            if self._live.get(instance_id) is live:
                del self._live[instance_id]
        store.set_status(instance_id, "complete", output=text)

    async def _call_run(self, event: WorkflowEvent, step: LocalWorkflowStep) -> Any:
        workflow = self.workflow
        if isinstance(workflow, type):
            entry = workflow(None, self.env)
            return await entry.run(event, step)
        return await workflow(event, step)

    async def aclose(self) -> None:
        """Stop every live task, as a host shutdown would (instances stay resumable)."""
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._live.clear()
        if self._owns_sql:
            with contextlib.suppress(Exception):
                self.sql.close()  # type: ignore[attr-defined]
