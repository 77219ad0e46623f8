"""``WorkflowSessions``: the session endpoints of an ``AgentServer``, answered by workflows.

It looks like a :class:`~helix_lab.runtime.LocalNamespace` to the client side
(``id_from_name``, ``get(id).fetch(request)``, ``subscribe``), so
``LocalBackend(WorkflowSessions(...))`` gives the very same :class:`AgentHandle` API,
and the gateway routes ``/sessions/{id}/...`` here unchanged. Each session is served
by :class:`~helix_lab.workflows.CloudflareAgentExecutor`:

``POST /start``, ``/interrupt``, ``/abort``, ``/resume`` (``continue``, with
``appendMessages``), ``/retry`` (``from_checkpoint``: the instance restarts after the
last checkpoint; ``from_start``), ``GET /status`` (with ``instanceStatus`` and the
instance's ``steps``), ``/sse``, ``/history``, ``/usage``, ``/messages``, ``/snapshot``,
``/checkpoints``, ``/checkpoints/{id}``.

Forks (``resume`` with ``mode: "branch"``) belong to the Durable Object approach; here
they are a 400 that says so.
"""

from __future__ import annotations

from typing import Any

from ..errors import AgentNotFoundError, BackendError, BadRequestError, NotFoundError, UserError
from ..runtime.http import (
    Request,
    Response,
    as_request,
    error_response,
    json_response,
    refusal_response,
)
from ..runtime.usage import rollup
from .executor import CloudflareAgentExecutor, WorkflowAgentHandle
from .local import LocalWorkflows
from .streams import stream_object_name

__all__ = ["WorkflowSessions"]

_SESSION_PREFIX = "session:"


class _Config:
    def __init__(self, agents: Any) -> None:
        self.agents = agents


class _ServerClass:
    """What the client transport reads to list agent types (``server_class.config.agents``)."""

    __name__ = "WorkflowSessions"

    def __init__(self, agents: Any) -> None:
        self.config = _Config(agents)


class WorkflowSessions:
    """Sessions served by the Workflows approach, behind the namespace interface."""

    def __init__(self, source: LocalWorkflows | CloudflareAgentExecutor, agents: Any) -> None:
        """``source``: the in-kernel assembly (``local_workflows(...)``), or an executor over
        a Worker's bindings."""
        self.workflows = source if isinstance(source, LocalWorkflows) else None
        self.executor = source.executor if isinstance(source, LocalWorkflows) else source
        self.agents = agents
        self.server_class = _ServerClass(agents)
        self.storage = self.workflows.streams.storage if self.workflows else "(bindings)"

    @property
    def in_memory(self) -> bool:
        return self.storage == ":memory:"

    def id_from_name(self, name: str) -> str:
        return name

    def get(self, object_id: str) -> _SessionStub:
        session_id = object_id[len(_SESSION_PREFIX):] if object_id.startswith(
            _SESSION_PREFIX) else object_id
        return _SessionStub(self, session_id)

    async def subscribe(self, object_id: str, from_sequence: int = 0, *,
                        follow: bool = False) -> Any:
        session_id = self.get(object_id).session_id
        session = await self.executor.state_store.get_session(session_id)
        if session is not None:  # touching a session continues its instance
            await self.executor.workflow_binding.get(session["instance_id"])
        if self.workflows is None:
            raise UserError("subscribe() reads the in-kernel streams; over a Worker's "
                            "bindings use GET /sse.")
        streams = self.workflows.streams
        return await streams.subscribe(streams.id_from_name(stream_object_name(session_id)),
                                       from_sequence, follow=follow)

    def stored_sessions(self) -> list[dict[str, Any]]:
        return []

    async def aclose(self) -> None:
        if self.workflows is not None:
            await self.workflows.aclose()

    def __repr__(self) -> str:
        return f"WorkflowSessions(storage={self.storage!r})"


class _SessionStub:
    def __init__(self, sessions: WorkflowSessions, session_id: str) -> None:
        self.sessions = sessions
        self.session_id = session_id

    async def fetch(self, request: Request | str) -> Response:
        try:
            return await self._route(as_request(request))
        except (BackendError, UserError) as exc:
            return refusal_response(exc)

    def _body(self, request: Request) -> dict[str, Any]:
        if not request.body:
            return {}
        body = request.json()
        if not isinstance(body, dict):
            raise BadRequestError("The body must be a JSON object.", code="bad_request")
        return body

    async def _handle(self) -> WorkflowAgentHandle:
        return await self.sessions.executor.get_handle(None, self.session_id)

    async def _route(self, request: Request) -> Response:
        method, path = request.method, request.path
        executor = self.sessions.executor
        if (method, path) == ("POST", "/start"):
            return await self._start(self._body(request))
        if method == "GET" and path == "/sse":
            await self._handle()
            return await executor.stream_manager.sse(
                self.session_id, request.url.partition("?")[2],
                request.headers.get("last-event-id"))
        if method == "GET" and path == "/history":
            await self._handle()
            limit = request.query.get("limit", "1000")
            after = request.query.get("fromSequence", "0")
            return await executor.stream_manager.stub(self.session_id).fetch(
                Request("GET", f"/history?fromSequence={after}&limit={limit}"))
        if (method, path) == ("GET", "/status") and await executor.state_store.get_session(
                self.session_id) is None:
            # As a Durable Object that was never started answers: idle, nothing to run.
            return json_response({"sessionId": None, "status": "idle", "stepCount": 0,
                                  "isExecuting": False, "canResume": False,
                                  "lastSequence": 0, "approach": "workflows"})
        handle = await self._handle()
        if (method, path) == ("GET", "/status"):
            return json_response(await handle.status())
        if (method, path) == ("POST", "/interrupt"):
            reason = self._body(request).get("reason", "interrupted")
            return json_response(await handle.interrupt(str(reason)))
        if (method, path) == ("POST", "/abort"):
            reason = self._body(request).get("reason", "aborted")
            return json_response(await handle.abort(str(reason)))
        if (method, path) == ("POST", "/resume"):
            return await self._resume(handle, self._body(request))
        if (method, path) == ("POST", "/retry"):
            options = self._body(request).get("options") or {}
            new = await handle.retry(options.get("mode", "from_checkpoint"),
                                     message=options.get("message"))
            return json_response({"sessionId": self.session_id, "runId": new.run_id})
        if (method, path) == ("GET", "/usage"):
            entries = (await handle.usage())["entries"]
            return json_response({"sessionId": self.session_id, "entries": entries,
                                  "rollup": rollup(entries)})
        if (method, path) == ("GET", "/messages"):
            return json_response({"checkpointId": None, "messages": await handle.messages()})
        if (method, path) == ("GET", "/snapshot"):
            status = await handle.status()
            return json_response({**status, "state": await handle.get_state(),
                                  "messages": await handle.messages()})
        if (method, path) == ("GET", "/checkpoints"):
            return json_response({"checkpoints": [
                _checkpoint_json(c) for c in await handle.checkpoints()]})
        if method == "GET" and path.startswith("/checkpoints/"):
            found = await executor.state_store.checkpoint(self.session_id,
                                                          path[len("/checkpoints/"):])
            if found is None:
                raise NotFoundError(f"No checkpoint {path[len('/checkpoints/'):]!r}.",
                                    code="checkpoint_not_found")
            return json_response({**_checkpoint_json(found), "state": found["state"]})
        return error_response(404, "not_found", f"No endpoint {method} {path} in a workflows "
                              "session.")

    async def _start(self, body: dict[str, Any]) -> Response:
        agent_type = body.get("agentType")
        if not isinstance(agent_type, str):
            raise BadRequestError("agentType must be a string.", code="bad_request",
                                  details={"field": "agentType"})
        agents = self.sessions.agents
        if not agents.has(agent_type):
            raise AgentNotFoundError(agent_type, agents.get_registered_types())
        payload = body.get("input") or {}
        message = payload.get("message") if isinstance(payload, dict) else None
        state = payload.get("state") if isinstance(payload, dict) else None
        handle = await self.sessions.executor.execute(agent_type, message, state=state,
                                                      session_id=self.session_id)
        return json_response({"sessionId": handle.session_id, "runId": handle.run_id,
                              "streamId": handle.stream_id})

    async def _resume(self, handle: WorkflowAgentHandle, body: dict[str, Any]) -> Response:
        options = body.get("options") or {}
        mode = options.get("mode", "continue")
        if mode == "branch" and options.get("checkpointId") and not (
                options.get("modifyState") or options.get("appendMessages")
                or options.get("editToolResults")):
            # Retry from a checkpoint: the instance restarts from the step after it.
            new = await handle.retry(checkpoint_id=str(options["checkpointId"]))
            return json_response({"sessionId": self.session_id, "runId": new.run_id})
        if mode != "continue":
            raise BadRequestError(
                f"resume mode {mode!r} with a changed state or messages forks a branch, "
                "which the Durable Object approach does; with --approach workflows use "
                "retry (a restart from a step).",
                code="bad_request", details={"field": "options.mode"})
        appended = options.get("appendMessages") or []
        message = next((m.get("content") for m in appended
                        if isinstance(m, dict) and isinstance(m.get("content"), str)), None)
        new = await handle.resume("with_message" if message else "continue", message=message)
        return json_response({"sessionId": self.session_id, "runId": new.run_id})


def _checkpoint_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"checkpointId": row["id"], "runId": row["run_id"], "step": row["step"],
            "branch": 0, "messageCount": row["message_count"], "status": row["status"],
            "timestamp": row["created_at"]}
