"""``create_agent_server``: the Durable Object class that runs agents, and its endpoints.

One ``AgentServer`` instance is one Durable Object, which holds one session. The same
class runs in the kernel (``LocalNamespace``) and in a Cloudflare Python Worker; a host
hands it a :class:`HostContext` (its SQL storage, a way to spawn tasks, and the namespace
it lives in) and calls :meth:`AgentServer.fetch` with each request.

Endpoints (camelCase JSON; errors are ``{"error": {"code", "message", ...}}``)::

    POST /start  /resume  /retry  /interrupt  /abort
    GET  /status  /sse?fromSequence=N  /history?fromSequence=N&limit=M
    GET  /usage  /messages  /snapshot  /checkpoints  /checkpoints/{id}
    WebSocket upgrade at /

``fromSequence=N`` means "I have seen up to N": the answer starts at N + 1.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeAlias

import pydantic

from ..agent import Agent
from ..errors import (
    AgentNotFoundError,
    BackendError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    UserError,
)
from ..llm.base import LLMAdapter
from .executor import Execution, RetryPolicy, call_hook
from .hooks import (
    AbortResult,
    AfterResumeContext,
    AfterRetryContext,
    AfterStartContext,
    BeforeResumeContext,
    BeforeRetryContext,
    BeforeStartContext,
    CompleteContext,
    EndpointContext,
    ExecutionState,
    ServerHooks,
)
from .http import Request, Response, WebSocketLike, error_response, json_response
from .jsonpatch import JsonPatchError, apply_patch
from .registry import AgentFactoryContext, AgentRegistry, AgentResolver
from .sql import SqlStorage
from .sse import encode_chunk, encode_end
from .state_store import Checkpoint, DOStateStore, checkpoint_id
from .stream import DOStreamManager
from .usage import DOUsageStore, UsageStore
from .wire import (
    AbortRequest,
    InterruptRequest,
    ResumeAgentRequestV2,
    RetryAgentRequestV2,
    StartAgentRequestV2,
    describe,
    parse_body,
)

__all__ = [
    "AbortResult",
    "AfterResumeContext",
    "AfterRetryContext",
    "AfterStartContext",
    "AgentServer",
    "BeforeResumeContext",
    "BeforeRetryContext",
    "BeforeStartContext",
    "CompleteContext",
    "EndpointContext",
    "ExecutionState",
    "HostContext",
    "LLMAdapterContext",
    "ServerHooks",
    "create_agent_server",
]

RESUMABLE = ("interrupted", "paused")
INTERRUPT_WAIT = 30.0


@dataclass
class LLMAdapterContext:
    session_id: str
    agent_type: str
    run_id: str


LLMAdapterFactory: TypeAlias = Callable[[Any, LLMAdapterContext], LLMAdapter]
EndpointHandler: TypeAlias = Callable[[Request, "EndpointContext"], Awaitable[Response]]
UsageStoreFactory: TypeAlias = Callable[[Any, str], UsageStore]


class HostContext(Protocol):
    """What a host gives each object: its storage, a task spawner, its namespace."""

    @property
    def id(self) -> str: ...

    @property
    def sql(self) -> SqlStorage: ...

    @property
    def namespace(self) -> Any: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...


@dataclass
class ServerConfig:
    llm_adapter: LLMAdapterFactory
    agents: AgentRegistry | AgentResolver
    hooks: ServerHooks = field(default_factory=ServerHooks)
    endpoints: dict[str, EndpointHandler] = field(default_factory=dict)
    usage_store: UsageStoreFactory | None = None
    logger: Any = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class AgentServer:
    """One Durable Object: one session, its runs, its storage and its streams."""

    config: ClassVar[ServerConfig]

    def __init__(self, ctx: HostContext, env: Any = None) -> None:
        if not hasattr(type(self), "config"):
            raise UserError("Build the server class with create_agent_server(...).")
        self.ctx = ctx
        self.env = env if env is not None else {}
        self.sql = ctx.sql
        self.logger = self.config.logger or logging.getLogger("helix_lab.runtime")
        self.execution: Execution | None = None
        # One transaction for every table's schema: one commit (one fsync) per new object.
        self.store, self.stream, self.usage = self.sql.transaction(lambda: (
            DOStateStore(self.sql),
            DOStreamManager(self.sql, is_live=lambda: self.is_executing, logger=self.logger),
            DOUsageStore(self.sql)))
        session = self.store.get_session()
        self.session_id: str = session["session_id"] if session else ""
        self.usage.session_id = self.session_id
        self.custom_usage = (self.config.usage_store(self.env, self.session_id)
                             if self.config.usage_store and self.session_id else None)
        self.execution_state = ExecutionState(self)
        if session:
            self.stream.agent_id, self.stream.agent_type = session["session_id"], session["agent_type"]
            self._recover(session)
        self._routes: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]] = {
            ("POST", "/start"): self._start,
            ("POST", "/resume"): self._resume,
            ("POST", "/retry"): self._retry,
            ("POST", "/interrupt"): self._interrupt,
            ("POST", "/abort"): self._abort,
            ("GET", "/status"): self._status,
            ("GET", "/sse"): self._sse,
            ("GET", "/history"): self._history,
            ("GET", "/usage"): self._usage,
            ("GET", "/messages"): self._messages,
            ("GET", "/snapshot"): self._snapshot,
            ("GET", "/checkpoints"): self._checkpoints,
        }

    # -- what the executor and hosts use ---------------------------------------------------

    @property
    def namespace(self) -> Any:
        return self.ctx.namespace

    @property
    def retry(self) -> RetryPolicy:
        return self.config.retry

    @property
    def is_executing(self) -> bool:
        return self.execution is not None and self.execution.is_executing

    @property
    def status(self) -> str:
        session = self.store.get_session()
        return session["status"] if session else "idle"

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self.ctx.spawn(coro)

    def log(self, level: str, message: str, exc: BaseException | None = None) -> None:
        getattr(self.logger, level, self.logger.warning)(
            f"[{self.session_id}] {message}", exc_info=exc)

    def on_execution_end(self, execution: Execution) -> None:
        self.stream.wake_all()
        hook = self.config.hooks.on_complete
        if hook is not None:
            context = CompleteContext(self.env, self.session_id, execution.run_id,
                                      execution.status, execution.output, execution.error)
            self.spawn(self._safe_hook(hook, context))

    def commit_session(self, **fields: Any) -> list[dict[str, Any]]:
        """Store session fields with the queued chunks, atomically; returns the chunks,
        for the caller to broadcast once it has updated its own state."""

        def write() -> list[dict[str, Any]]:
            self.store.update_session(**fields)
            return self.stream.take_pending()

        return self.sql.transaction(write)

    def after_commit(self, usage: list[dict[str, Any]]) -> None:
        if self.custom_usage is not None and usage:
            self.spawn(self._record_custom_usage(usage))

    async def _record_custom_usage(self, usage: list[dict[str, Any]]) -> None:
        for entry in usage:
            try:
                await self.custom_usage.record_entry({**entry, "sessionId": self.session_id})  # type: ignore[union-attr]
            except Exception as exc:
                self.log("warning", "custom usage store failed", exc)

    async def _safe_hook(self, hook: Callable[..., Any], context: Any) -> None:
        try:
            await call_hook(hook, context)
        except Exception as exc:
            self.log("warning", "on_complete hook raised", exc)

    def _recover(self, session: dict[str, Any]) -> None:
        """A run found ``running`` with no task belongs to a host that died: interrupt it."""
        if session["status"] != "running":
            return
        head = self.store.get_checkpoint(session["head_checkpoint"]) if session[
            "head_checkpoint"] else None
        step = head.step if head else 0
        self.stream.write({"type": "run_interrupted", "reason": "host_restarted",
                           "checkpointId": head.id if head else None},
                          run_id=session["run_id"], step=step)

        self.stream.broadcast(self.commit_session(status="interrupted"))
        self.log("info", f"recovered run {session['run_id']} as interrupted at step {step}")

    # -- dispatch --------------------------------------------------------------------------

    async def fetch(self, request: Request) -> Response:
        """Answer one request. Never raises; errors become JSON error responses."""
        try:
            custom = self.config.endpoints.get(request.path)
            if custom is not None:
                return await custom(request, EndpointContext(self.env, self.execution_state,
                                                             self.logger))
            if request.websocket is not None:
                return self._websocket(request)
            handler = self._routes.get((request.method, request.path))
            if (handler is None and request.method == "GET"
                    and request.path.startswith("/checkpoints/")):
                return self._checkpoint(request.path[len("/checkpoints/"):])
            if handler is None:
                return self._no_route(request)
            return await handler(request)
        except BackendError as exc:
            return error_response(exc.status, exc.code, exc.message, **exc.details)
        except AgentNotFoundError as exc:
            return error_response(404, "agent_not_found", str(exc),
                                  agentType=exc.agent_type, availableTypes=exc.available_types)
        except UserError as exc:
            return error_response(400, "bad_request", str(exc))
        except Exception as exc:
            self.log("error", f"{request.method} {request.path} failed", exc)
            return error_response(500, "internal_error",
                                  "The agent server hit an unexpected error; see its log.")

    def _no_route(self, request: Request) -> Response:
        paths = sorted({p for _, p in self._routes} | set(self.config.endpoints))
        if any(p == request.path for _, p in self._routes):
            methods = sorted(m for m, p in self._routes if p == request.path)
            return error_response(405, "method_not_allowed",
                                  f"{request.method} is not allowed on {request.path}; "
                                  f"use {' or '.join(methods)}.")
        return error_response(404, "not_found", f"No endpoint {request.method} {request.path}. "
                              f"Endpoints: {', '.join(paths)}, /checkpoints/{{id}}.")

    # -- helpers ---------------------------------------------------------------------------

    def _resolve(self, agent_type: str, session_id: str, run_id: str,
                 user_id: str | None = None, parent_type: str | None = None) -> Agent:
        context = AgentFactoryContext(self.env, session_id, run_id, user_id)
        agents = self.config.agents
        resolve = agents.resolve if isinstance(agents, AgentRegistry) else agents
        try:
            agent = resolve(agent_type, context)
        except AgentNotFoundError:
            # A sub-agent need not be registered: find it through its parent.
            if parent_type is None:
                raise
            parent = resolve(parent_type, context)
            agent = next((a for a in parent.agents if a.name == agent_type), None)
            if agent is None:
                raise
        if not isinstance(agent, Agent):
            raise UserError(f"The resolver returned {agent!r} for {agent_type!r}, not an Agent.")
        return agent

    def _require_session(self) -> dict[str, Any]:
        session = self.store.get_session()
        if session is None:
            raise NotFoundError(code="session_not_found", message="This session has not been started; POST /start first.")
        return session

    def _require_idle(self, action: str) -> None:
        if self.is_executing:
            run_id = self.execution.run_id if self.execution else "?"
            raise ConflictError(code="already_executing", message=f"Session {self.session_id!r} is executing run {run_id}; "
                            f"interrupt or abort it before you {action}.")

    def _head(self, session: dict[str, Any]) -> Checkpoint:
        head = self.store.get_checkpoint(session["head_checkpoint"] or "")
        if head is None:
            raise NotFoundError(code="checkpoint_not_found", message="This session has no checkpoint yet.")
        return head

    def _validate_state(self, agent: Agent, data: Any, field_name: str) -> dict[str, Any]:
        try:
            return agent.validate_state(data)
        except pydantic.ValidationError as exc:
            _, message = describe(exc)
            raise BadRequestError(f"{field_name} does not fit {agent.name}'s state schema: {message}",
                             field=field_name) from None

    @staticmethod
    def _check_messages(messages: list[dict[str, Any]], field_name: str) -> None:
        for i, message in enumerate(messages):
            content = message.get("content")
            if message.get("role") not in ("user", "assistant") or not isinstance(
                    content, str | list):
                raise BadRequestError(f"{field_name}[{i}] must be {{'role': 'user'|'assistant', "
                                 "'content': str | list}}.", field=f"{field_name}[{i}]")

    def _begin(self, agent: Agent, *, run_id: str, parent: Checkpoint | None,
               parent_state: dict[str, Any] | None, state: dict[str, Any],
               append: list[dict[str, Any]], branch: int, chunk: dict[str, Any],
               fresh_messages: list[dict[str, Any]] | None = None,
               create: Callable[[], None] | None = None) -> Execution:
        """Write the run's starting checkpoint and launch it.

        ``create`` writes a new session's row in the same transaction as its first
        checkpoint: a host killed in between must not leave a session with no checkpoint,
        which could be neither started again nor resumed."""
        step = parent.step if parent else 0
        llm = self.config.llm_adapter(self.env, LLMAdapterContext(self.session_id, agent.name,
                                                                  run_id))
        cp_id = checkpoint_id(self.session_id, step)
        self.stream.write(chunk, run_id=run_id, step=step)
        cp_chunk = self.stream.write({"type": "checkpoint", "checkpointId": cp_id, "step": step,
                                      "branch": branch}, run_id=run_id, step=step)
        base_head = parent.message_head if parent and fresh_messages is None else None
        base_count = parent.message_count if parent and fresh_messages is None else 0
        to_append = (fresh_messages or []) + append

        def write() -> tuple[Checkpoint, list[dict[str, Any]]]:
            if create is not None:
                create()
            head = self.store.append_messages(base_head, to_append)
            cp = self.store.save_checkpoint(
                session_id=self.session_id, parent=parent, parent_state=parent_state,
                state=state, run_id=run_id, step=step, branch=branch, message_head=head,
                message_count=base_count + len(to_append), status="running",
                sequence=cp_chunk["sequence"], cp_id=cp_id)
            self.store.update_session(status="running", run_id=run_id, head_checkpoint=cp.id,
                                      output=None, error=None)
            return cp, self.stream.take_pending()

        try:
            cp, chunks = self.sql.transaction(write)
        except BaseException:
            self.stream.discard_pending()  # the run never began: nobody may see its chunks
            raise
        execution = Execution(self, agent, llm, run_id=run_id, head=cp, state=state,
                              messages=[])
        self.execution = execution
        self.stream.broadcast(chunks)
        execution.start()
        return execution

    def _started(self, execution: Execution, status: str) -> dict[str, Any]:
        return {"sessionId": self.session_id, "streamId": self.session_id, "status": status,
                "runId": execution.run_id}

    async def _before(self, hook: Callable[..., Any] | None, context: Any) -> Response | None:
        result = await call_hook(hook, context)
        if isinstance(result, AbortResult) and result.abort:
            return result.response
        return None

    # -- POST endpoints --------------------------------------------------------------------

    async def _start(self, request: Request) -> Response:
        hooks = self.config.hooks
        if hooks.transform_request is not None:
            raw = request.json()
            shaped = await call_hook(hooks.transform_request, raw, self.env)
            try:
                body = StartAgentRequestV2.model_validate(shaped)
            except pydantic.ValidationError as exc:
                field_name, message = describe(exc)
                raise BadRequestError(message, field=field_name) from None
        else:
            body = parse_body(request, StartAgentRequestV2)
        session = self.store.get_session()
        if session and session["session_id"] != body.session_id:
            raise ConflictError(code="session_mismatch", message=f"This object holds session {session['session_id']!r}, "
                            f"not {body.session_id!r}.")
        if session and session["agent_type"] != body.agent_type:
            raise ConflictError(code="agent_type_mismatch", message=f"Session {body.session_id!r} runs agent {session['agent_type']!r}; "
                            f"start a new session to run {body.agent_type!r}.")
        run_id = "run_" + secrets.token_hex(6)
        metadata = body.metadata or {}
        agent = self._resolve(body.agent_type, body.session_id, run_id, body.user_id,
                              metadata.get("parentAgentType"))
        aborted = await self._before(hooks.before_start, BeforeStartContext(
            self.env, request, body, self.execution_state))
        if aborted is not None:
            return aborted
        self._require_idle("start a new run")
        message = {"role": "user", "content": body.input.message}
        create: Callable[[], None] | None = None
        if session is None:
            state = self._validate_state(agent, body.input.state or {}, "input.state")
            prior = body.input.messages or []
            self._check_messages(prior, "input.messages")

            def create_session() -> None:
                self.store.create_session(body.session_id, body.agent_type, user_id=body.user_id,
                                          tags=body.tags, metadata=body.metadata)

            create = create_session
            self.session_id = body.session_id
            self.usage.session_id = body.session_id
            if self.config.usage_store is not None:
                self.custom_usage = self.config.usage_store(self.env, self.session_id)
            self.stream.agent_id, self.stream.agent_type = body.session_id, body.agent_type
            parent, parent_state, append, branch = None, None, [*prior, message], 0
        else:
            parent = self._head(session)
            parent_state = self.store.state_at(parent.id)
            state = (self._validate_state(agent, body.input.state, "input.state")
                     if body.input.state is not None else parent_state)
            append, branch = [message], parent.branch
        execution = self._begin(agent, run_id=run_id, parent=parent, parent_state=parent_state,
                                state=state, append=append, branch=branch,
                                chunk={"type": "run_started", "agentType": agent.name,
                                       "message": body.input.message},
                                create=create)
        await call_hook(hooks.after_start, AfterStartContext(
            self.env, self.session_id, run_id, agent.name, execution))
        response = self._started(execution, "started")
        if hooks.transform_response is not None:
            transformed = await call_hook(hooks.transform_response, response,
                                          {"sessionId": self.session_id,
                                           "agentType": agent.name})
            return json_response(transformed)
        return json_response(response)

    async def _resume(self, request: Request) -> Response:
        body = parse_body(request, ResumeAgentRequestV2, optional=True)
        aborted = await self._before(self.config.hooks.before_resume, BeforeResumeContext(
            self.env, request, body, self.execution_state))
        if aborted is not None:
            return aborted
        self._require_idle("resume")
        session = self._require_session()
        options = body.options
        if options.mode == "retry":
            return await self._launch_retry(session, "from_checkpoint", None, "resumed")
        run_id = "run_" + secrets.token_hex(6)
        agent = self._resolve(session["agent_type"], self.session_id, run_id,
                              session["user_id"], session["metadata"].get("parentAgentType"))
        append = options.append_messages or []
        self._check_messages(append, "options.appendMessages")
        if options.mode == "branch" or options.checkpoint_id:
            if not options.checkpoint_id:
                raise BadRequestError("options.checkpointId is required for mode 'branch'.",
                                 field="options.checkpointId")
            parent = self.store.get_checkpoint(options.checkpoint_id)
            if parent is None:
                raise NotFoundError(code="checkpoint_not_found", message=f"No checkpoint {options.checkpoint_id!r} in session "
                                f"{self.session_id!r}; GET /checkpoints lists them.")
            parent_state = self.store.state_at(parent.id)
            state = self._modified_state(agent, parent_state, options.modify_state)
            branch = self.store.new_branch()
            chunk = {"type": "run_resumed", "mode": "branch", "fromCheckpointId": parent.id,
                     "branch": branch}
        else:
            if session["status"] not in RESUMABLE:
                raise ConflictError(code="not_resumable", message=f"Session {self.session_id!r} is {session['status']} and cannot "
                                "be resumed. Send a new message, retry it, or branch from a "
                                "checkpoint.")
            parent = self._head(session)
            parent_state = self.store.state_at(parent.id)
            state = self._modified_state(agent, parent_state, options.modify_state)
            branch = parent.branch
            chunk = {"type": "run_resumed", "mode": "continue", "fromCheckpointId": parent.id}
        execution = self._begin(agent, run_id=run_id, parent=parent, parent_state=parent_state,
                                state=state, append=append, branch=branch, chunk=chunk)
        await call_hook(self.config.hooks.after_resume, AfterStartContext(
            self.env, self.session_id, run_id, agent.name, execution))
        return json_response(self._started(execution, "resumed"))

    def _modified_state(self, agent: Agent, state: dict[str, Any], change: Any) -> dict[str, Any]:
        """``modifyState``: an object merged into the state, or a JSON patch."""
        if change is None:
            return state
        if isinstance(change, list):
            try:
                new = apply_patch(state, change)
            except JsonPatchError as exc:
                raise BadRequestError(f"options.modifyState: {exc}", field="options.modifyState") from None
        elif isinstance(change, dict):
            new = {**state, **change}
        else:
            raise BadRequestError("options.modifyState must be an object (merged into the state) or "
                             "a JSON patch list.", field="options.modifyState")
        return self._validate_state(agent, new, "options.modifyState")

    async def _retry(self, request: Request) -> Response:
        body = parse_body(request, RetryAgentRequestV2, optional=True)
        aborted = await self._before(self.config.hooks.before_retry, BeforeRetryContext(
            self.env, request, body, self.execution_state))
        if aborted is not None:
            return aborted
        self._require_idle("retry")
        session = self._require_session()
        return await self._launch_retry(session, body.options.mode, body.options.message,
                                        "started")

    async def _launch_retry(self, session: dict[str, Any], mode: str, message: str | None,
                            status: str) -> Response:
        run_id = "run_" + secrets.token_hex(6)
        agent = self._resolve(session["agent_type"], self.session_id, run_id,
                              session["user_id"], session["metadata"].get("parentAgentType"))
        head = self._head(session)
        fresh = None
        if mode == "from_start":
            root = self.store.first_checkpoint(head)
            parent, parent_state = root, self.store.state_at(root.id)
            if message is not None:
                prefix = self.store.load_messages(root.message_head)[:-1]
                fresh = [*prefix, {"role": "user", "content": message}]
            append, branch = [], self.store.new_branch()
        else:
            if session["status"] == "completed":
                raise ConflictError(code="not_retryable", message=f"Session {self.session_id!r} completed; there is nothing to "
                                "retry. Branch from a checkpoint with /resume mode 'branch'.")
            parent, parent_state = head, self.store.state_at(head.id)
            append = [{"role": "user", "content": message}] if message else []
            branch = head.branch
        execution = self._begin(agent, run_id=run_id, parent=parent, parent_state=parent_state,
                                state=parent_state, append=append, branch=branch,
                                fresh_messages=fresh,
                                chunk={"type": "run_resumed", "mode": f"retry_{mode}",
                                       "fromCheckpointId": parent.id})
        await call_hook(self.config.hooks.after_retry, AfterStartContext(
            self.env, self.session_id, run_id, agent.name, execution))
        return json_response(self._started(execution, status))

    async def _interrupt(self, request: Request) -> Response:
        body = parse_body(request, InterruptRequest, optional=True)
        if not self.is_executing or self.execution is None:
            raise ConflictError(code="not_running", message=f"Session {self.session_id or '(new)'!r} is "
                            f"{self.status}; there is nothing to interrupt.")
        try:
            await asyncio.wait_for(self.execution.interrupt(body.reason), INTERRUPT_WAIT)
        except TimeoutError:
            return json_response({**self._status_body(), "note": "interrupt requested; the "
                                  "current tool has not finished yet"}, status=202)
        return json_response(self._status_body())

    async def _abort(self, request: Request) -> Response:
        body = parse_body(request, AbortRequest, optional=True)
        if self.is_executing and self.execution is not None:
            await self.execution.abort(body.reason)
            return json_response(self._status_body())
        session = self._require_session()
        if session["status"] not in RESUMABLE:
            raise ConflictError(code="not_running", message=f"Session {self.session_id!r} is {session['status']};"
                            " there is nothing to abort.")
        error = f"Aborted: {body.reason}"
        self.stream.write({"type": "run_failed", "error": error, "aborted": True},
                          run_id=session["run_id"])

        self.stream.broadcast(self.commit_session(status="failed", error=error))
        return json_response(self._status_body())

    # -- GET endpoints ---------------------------------------------------------------------

    def _status_body(self) -> dict[str, Any]:
        session = self.store.get_session()
        if session is None:
            return {"sessionId": None, "status": "idle", "stepCount": 0, "isExecuting": False,
                    "canResume": False, "lastSequence": 0}
        head = self.store.get_checkpoint(session["head_checkpoint"] or "")
        status = session["status"]
        stream_status = {"running": "active", "interrupted": "paused", "paused": "paused",
                         "completed": "ended", "failed": "failed"}.get(status, "ended")
        body: dict[str, Any] = {
            "sessionId": session["session_id"], "agentType": session["agent_type"],
            "status": status, "runId": session["run_id"], "stepCount": head.step if head else 0,
            "checkpointId": head.id if head else None, "isExecuting": self.is_executing,
            "canResume": status in RESUMABLE, "streamStatus": stream_status,
            "lastSequence": self.stream.sequence, "branch": head.branch if head else 0,
        }
        if session["output"] is not None:
            body["output"] = session["output"]
        if session["error"]:
            body["error"] = session["error"]
        return body

    async def _status(self, request: Request) -> Response:
        return json_response(self._status_body())

    @staticmethod
    def _int_param(request: Request, name: str, default: int, maximum: int | None = None) -> int:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequestError(f"{name} must be a whole number, got {raw[:40]!r}.",
                             field=name) from None
        if value < 0:
            raise BadRequestError(f"{name} must be 0 or more, got {raw[:40]}.", field=name)
        # SQLite integers are 64-bit; no sequence or limit comes anywhere near that.
        return min(value, maximum if maximum is not None else 2**63 - 1)

    async def _sse(self, request: Request) -> Response:
        after = self._int_param(request, "fromSequence", 0)
        follow = request.query.get("follow") in ("1", "true")
        self.stream.flush()
        subscription = self.stream.subscribe(after, follow=follow)

        async def body() -> Any:
            try:
                async for batch in subscription:
                    yield b"".join(encode_chunk(c) for c in batch)
                yield encode_end()
            finally:
                subscription.close()

        return Response(status=200, stream=body(), headers={
            "content-type": "text/event-stream", "cache-control": "no-cache",
            "x-accel-buffering": "no"})

    async def _history(self, request: Request) -> Response:
        after = self._int_param(request, "fromSequence", 0)
        limit = self._int_param(request, "limit", 1000, maximum=10_000)
        self.stream.flush()
        chunks = self.stream.read(after, limit + 1)
        return json_response({"chunks": chunks[:limit], "hasMore": len(chunks) > limit,
                              "lastSequence": self.stream.sequence})

    async def _usage(self, request: Request) -> Response:
        store: Any = self.custom_usage or self.usage
        entries = await store.get_entries(self.session_id)
        return json_response({"sessionId": self.session_id or None, "entries": entries,
                              "rollup": await store.get_rollup(self.session_id)})

    def _checkpoint_or_head(self, request: Request) -> Checkpoint:
        session = self._require_session()
        wanted = request.query.get("checkpointId")
        if wanted:
            cp = self.store.get_checkpoint(wanted)
            if cp is None:
                raise NotFoundError(code="checkpoint_not_found", message=f"No checkpoint {wanted!r}.")
            return cp
        return self._head(session)

    async def _messages(self, request: Request) -> Response:
        cp = self._checkpoint_or_head(request)
        return json_response({"checkpointId": cp.id,
                              "messages": self.store.load_messages(cp.message_head)})

    async def _snapshot(self, request: Request) -> Response:
        body = self._status_body()
        if body["sessionId"] is None:
            return json_response({**body, "state": None, "messages": [], "checkpoints": []})
        cp = self._checkpoint_or_head(request)
        checkpoints = self.store.list_checkpoints()
        return json_response({
            **body, "state": self.store.state_at(cp.id),
            "messages": self.store.load_messages(cp.message_head),
            "checkpoints": [c.to_json() for c in checkpoints[-50:]],
            "checkpointCount": len(checkpoints),
            "usage": (await self.usage.get_rollup())["total"],
        })

    async def _checkpoints(self, request: Request) -> Response:
        self._require_session()
        return json_response({"sessionId": self.session_id, "checkpoints": [
            c.to_json() for c in self.store.list_checkpoints()]})

    def _checkpoint(self, cp_id: str) -> Response:
        self._require_session()
        cp = self.store.get_checkpoint(cp_id)
        if cp is None:
            raise NotFoundError(code="checkpoint_not_found", message=f"No checkpoint {cp_id!r} in session "
                            f"{self.session_id!r}; GET /checkpoints lists them.")
        return json_response({**cp.to_json(), "state": self.store.state_at(cp.id),
                              "output": cp.output})

    def _websocket(self, request: Request) -> Response:
        if request.path != "/":
            return error_response(404, "not_found", "WebSockets connect at /.")
        after = self._int_param(request, "fromSequence", 0)
        ws = request.websocket
        assert ws is not None
        self.stream.attach_socket(ws, after)
        return Response(status=101)

    def websocket_closed(self, ws: WebSocketLike) -> None:
        self.stream.detach_socket(ws)


def create_agent_server(
    *,
    llm_adapter: LLMAdapterFactory,
    agents: AgentRegistry | AgentResolver,
    hooks: ServerHooks | None = None,
    endpoints: dict[str, EndpointHandler] | None = None,
    usage_store: UsageStoreFactory | None = None,
    logger: Any = None,
    retry: RetryPolicy | None = None,
) -> type[AgentServer]:
    """Build the Durable Object class: ``AgentServer = create_agent_server(...)``."""
    if not callable(llm_adapter):
        raise UserError("llm_adapter must be a factory: (env, context) -> LLMAdapter.")
    if not (isinstance(agents, AgentRegistry) or callable(agents)):
        raise UserError("agents must be an AgentRegistry or a resolver (agent_type, ctx) -> Agent.")
    for path in endpoints or {}:
        if not path.startswith("/"):
            raise UserError(f"Custom endpoint {path!r} must start with '/'.")
    config = ServerConfig(llm_adapter=llm_adapter, agents=agents, hooks=hooks or ServerHooks(),
                          endpoints=dict(endpoints or {}), usage_store=usage_store,
                          logger=logger, retry=retry or RetryPolicy())
    return type("AgentServer", (AgentServer,), {"config": config})
