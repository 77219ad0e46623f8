"""The Workflows approach as a Cloudflare Python Worker.

Three classes, which ``helix deploy --approach workflows`` exports from ``src/entry.py``:

- ``AgentWorkflow`` (a ``WorkflowEntrypoint``, the ``[[workflows]]`` class): ``run(event,
  step)`` is :func:`~helix_lab.workflows.run_agent_workflow`, whose steps are
  ``@step.do`` functions of Cloudflare's Python Workflows SDK;
- ``StreamServerObject`` (a Durable Object, bound as ``STREAMS``): one session's chunk
  stream, :class:`~helix_lab.workflows.StreamServer` over the object's SQLite;
- ``WorkflowsDefault`` (the front door): bearer auth and ``/sessions/{id}/...`` routing,
  answered by :class:`~helix_lab.workflows.WorkflowSessions` over the bindings.

Bindings, from ``env``: ``AGENT_WORKFLOW`` (Workflows), ``AGENT_DB`` (D1), ``STREAMS``
(the stream objects); ``HELIX_TOKEN`` and the agents module as for the DO approach.
The bindings are JavaScript objects on Cloudflare: :class:`JsWorkflows` and :class:`JsD1`
turn Python calls into their calling convention and their results into Python.
"""

from __future__ import annotations

import logging
from typing import Any

from workers import WorkflowEntrypoint

from ..errors import BackendError, NotFoundError
from ..workflows.agent_steps import WorkflowDependencies
from ..workflows.executor import CloudflareAgentExecutor
from ..workflows.sessions import WorkflowSessions
from ..workflows.state import D1StateStore
from ..workflows.streams import DurableObjectStreamManager, StreamServer
from ..workflows.workflow import run_agent_workflow
from .agents import load_agents
from .convert import worker_error
from .do_sql import DOSqlStorage
from .env import EnvView
from .front_door import FrontDoor
from .serving import ServingObject
from .stubs import WorkerNamespace

__all__ = ["AgentWorkflow", "JsD1", "JsWorkflows", "StreamServerObject", "WorkflowsDefault",
           "workflow_dependencies"]

log = logging.getLogger("helix_lab.worker")
BINDINGS = ("AGENT_WORKFLOW", "AGENT_DB", "STREAMS")


def _js(value: Any) -> Any:
    """A Python dict as a JavaScript object under Pyodide; unchanged elsewhere."""
    try:
        import js
        from pyodide.ffi import to_js
    except ImportError:
        return value
    return to_js(value, dict_converter=js.Object.fromEntries)


def _py(value: Any) -> Any:
    to_py = getattr(value, "to_py", None)
    return to_py() if to_py is not None else value


class _JsInstance:
    def __init__(self, instance: Any) -> None:
        self._instance = instance
        self.id = str(instance.id)

    async def status(self) -> dict[str, Any]:
        return dict(_py(await self._instance.status()))

    async def steps(self) -> list[dict[str, Any]]:
        lister = getattr(self._instance, "steps", None)  # the stand-in's; not Cloudflare's
        return list(_py(await lister())) if lister is not None else []

    async def pause(self) -> None:
        await self._instance.pause()

    async def resume(self) -> None:
        await self._instance.resume()

    async def terminate(self) -> None:
        await self._instance.terminate()

    async def restart(self, options: dict[str, Any] | None = None) -> None:
        await self._instance.restart(_js(options or {}))

    async def send_event(self, type: str, payload: Any = None) -> None:
        await self._instance.sendEvent(_js({"type": type, "payload": payload}))


class JsWorkflows:
    """``env.AGENT_WORKFLOW`` with the Python calls the executor makes."""

    def __init__(self, binding: Any) -> None:
        self._binding = binding

    async def create(self, id: str | None = None, params: Any = None) -> _JsInstance:
        return _JsInstance(await self._binding.create(_js({"id": id, "params": params})))

    async def get(self, id: str) -> _JsInstance:
        try:
            return _JsInstance(await self._binding.get(id))
        except BackendError:
            raise
        except Exception as exc:
            raise NotFoundError(f"There is no workflow instance {id!r} ({exc}).",
                                code="instance_not_found") from None


class _JsStatement:
    def __init__(self, statement: Any) -> None:
        self.raw_statement = statement

    def bind(self, *values: Any) -> _JsStatement:
        return _JsStatement(self.raw_statement.bind(*values))

    async def all(self) -> dict[str, Any]:
        return dict(_py(await self.raw_statement.all()))

    async def run(self) -> dict[str, Any]:
        return dict(_py(await self.raw_statement.run()))

    async def first(self, column: str | None = None) -> Any:
        found = await (self.raw_statement.first(column) if column is not None
                       else self.raw_statement.first())
        return _py(found)


class JsD1:
    """``env.AGENT_DB`` with results as Python dicts and lists."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def prepare(self, sql: str) -> _JsStatement:
        return _JsStatement(self._db.prepare(sql))

    async def batch(self, statements: list[_JsStatement]) -> list[dict[str, Any]]:
        raw = [s.raw_statement for s in statements]
        return [dict(_py(r)) for r in _py(await self._db.batch(_js(raw)))]

    async def exec(self, script: str) -> Any:
        return _py(await self._db.exec(script))


def _missing(env: EnvView) -> str | None:
    for name in BINDINGS:
        if env.get(name) is None:
            return name
    return None


def workflow_dependencies(env: EnvView) -> WorkflowDependencies:
    """What ``run_agent_workflow`` needs, from the Worker's bindings and agents module."""
    config = load_agents(env).server_class.config
    return WorkflowDependencies(
        state_store=D1StateStore(JsD1(env.get("AGENT_DB"))),
        stream_manager=DurableObjectStreamManager(WorkerNamespace(env.get("STREAMS"))),
        llm_adapter=config.llm_adapter, registry=config.agents,
        workflow_binding=JsWorkflows(env.get("AGENT_WORKFLOW")), env=env, logger=log)


class AgentWorkflow(WorkflowEntrypoint):
    """One agent run; every model call and tool call is a memoized ``@step.do``."""

    async def run(self, event: Any, step: Any) -> Any:
        return await run_agent_workflow(event, step, workflow_dependencies(EnvView(self.env)))


class _StreamCtx:
    def __init__(self, ctx: Any) -> None:
        self.sql = DOSqlStorage(ctx.storage)
        self.id = str(getattr(ctx, "id", ""))


class StreamServerObject(ServingObject):
    """The ``STREAMS`` Durable Object: one session's chunks, stored and fanned out."""

    kind = "stream object"

    def _build(self) -> StreamServer:
        return StreamServer(_StreamCtx(self.ctx), self.env)


class WorkflowsDefault(FrontDoor):
    """The front door of the Workflows approach: auth, then the session endpoints."""

    def _configuration_problem(self, env: EnvView) -> Any:
        missing = _missing(env)
        if missing is None:
            return None
        return worker_error(503, "not_configured", f"The {missing} binding is missing; "
                            "run helix deploy --approach workflows to write wrangler.toml.")

    def _sessions(self, env: EnvView) -> Any:
        deps = workflow_dependencies(env)
        executor = CloudflareAgentExecutor(workflow_binding=deps.workflow_binding,
                                           state_store=deps.state_store,
                                           stream_manager=deps.stream_manager, logger=log)
        return WorkflowSessions(executor, deps.registry)
