"""``create_agent_server``: the Durable Object class that runs agents, and its endpoints.

One ``AgentServer`` instance is one Durable Object, which holds one session. The same
class runs in the kernel (``LocalNamespace``) and in a Cloudflare Python Worker; a host
hands it a :class:`HostContext` (its SQL storage, a way to spawn tasks, and the namespace
it lives in) and calls :meth:`AgentServer.fetch` with each request.

Endpoints (camelCase JSON; errors are ``{"error": {"code", "message", ...}}``)::

    POST /start  /resume  /retry  /interrupt  /abort       here: they plan and start runs
    POST /approve                                          decide tool calls that wait
    GET  /status /sse /history /usage /messages /snapshot  in reads.py: they change nothing
    GET  /checkpoints  /checkpoints/{id}  /steps/{step}
    WebSocket upgrade on any path (the seed's worker forwards /ws/{id} unchanged)

Every run starts the same way: an endpoint makes a :class:`RunPlan` (the agent, the
checkpoint it starts from, the state and messages it starts with) and :meth:`_begin`
commits the run's first checkpoint and launches an :class:`~.executor.Execution`, which
sees the server only through the small :class:`~.executor.RunHost` protocol.
"""

from __future__ import annotations

import asyncio
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
    UserError,
)
from ..llm.base import LLMAdapter
from . import reads
from .approvals import PendingTurn, check_decisions
from .chunks import RESUMABLE
from .edits import plan_edits
from .executor import Execution, RetryPolicy
from .handle import AgentHandle
from .hooks import (
    AfterStartContext,
    BeforeResumeContext,
    BeforeRetryContext,
    BeforeStartContext,
    CompleteContext,
    EndpointContext,
    ExecutionState,
    ServerHooks,
    call_hook,
)
from .http import (
    Request,
    Response,
    WebSocketLike,
    error_response,
    json_response,
    refusal_response,
)
from .inspector import tool_specs
from .jsonpatch import JsonPatchError, apply_patch
from .logs import RuntimeLog
from .object_client import ObjectClient
from .registry import AgentFactoryContext, AgentResolver, AgentResolverInterface
from .session_storage import SessionStorage
from .sql import SqlStorage
from .state_store import Checkpoint, checkpoint_id
from .usage import UsageStore
from .wire import (
    AbortRequest,
    ApproveRequest,
    InterruptRequest,
    ResumeAgentRequestV2,
    RetryAgentRequestV2,
    StartAgentRequestV2,
    describe,
    parse_body,
    validate_body,
)

__all__ = [
    "AgentServer",
    "HostContext",
    "LLMAdapterContext",
    "RunPlan",
    "create_agent_server",
    "new_run_id",
]

INTERRUPT_WAIT = 30.0


def new_run_id() -> str:
    """A fresh run id; the one place run ids are made."""
    return "run_" + secrets.token_hex(6)


class _Answered(Exception):
    """A ``before_*`` hook answered the request itself: :meth:`AgentServer.fetch` sends
    ``response`` and the endpoint goes no further."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


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
    agents: AgentResolverInterface | AgentResolver
    hooks: ServerHooks = field(default_factory=ServerHooks)
    endpoints: dict[str, EndpointHandler] = field(default_factory=dict)
    usage_store: UsageStoreFactory | None = None
    logger: Any = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass
class RunPlan:
    """Everything :meth:`AgentServer._begin` needs to start a run."""

    agent: Agent
    run_id: str
    chunk: dict[str, Any]
    """The run's first chunk: ``run_started`` or ``run_resumed``."""
    state: dict[str, Any]
    branch: int
    parent: Checkpoint | None = None
    """The checkpoint the run goes on from; ``None`` for a new session."""
    parent_state: dict[str, Any] | None = None
    append: list[dict[str, Any]] = field(default_factory=list)
    """Messages added after the parent's prefix (a new user message, ``appendMessages``)."""
    fresh_messages: list[dict[str, Any]] | None = None
    """A whole new message list, instead of the parent's prefix (retry from the start)."""
    create: Callable[[], None] | None = None
    """Writes a new session's row, in the same transaction as its first checkpoint."""
    base: tuple[int | None, int] | None = None
    """``(message head, count)`` to append after instead of the parent's prefix: an edited
    tool result replaces the parent's last message."""
    pending: PendingTurn | None = None
    """A decided paused turn: the run completes that step first (and its starting
    checkpoint keeps the turn, so that a host dying before it does loses nothing)."""
    budget: float | None = None
    """A new budget for the session's spend (``maxCostUsd``), stored with the run."""


class AgentServer:
    """One Durable Object: one session, its runs, its storage and its streams."""

    config: ClassVar[ServerConfig]

    def __init__(self, ctx: HostContext, env: Any = None) -> None:
        if not hasattr(type(self), "config"):
            raise UserError("Build the server class with create_agent_server(...).")
        self.ctx = ctx
        self.env = env if env is not None else {}
        self.logger = RuntimeLog(self.config.logger)
        self.retry: RetryPolicy = self.config.retry
        self.execution: Execution | None = None
        self.storage = SessionStorage(ctx.sql, is_live=lambda: self.is_executing,
                                      logger=self.logger)
        # Its parts, by the short names the endpoints, hosts and tests use.
        self.sql, self.store = self.storage.sql, self.storage.state
        self.stream, self.usage = self.storage.stream, self.storage.usage
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
            ("POST", "/approve"): self._approve,
        }

    @property
    def usage_store(self) -> UsageStore:
        """The store ``GET /usage`` answers from: the custom one, else the session's own."""
        return self.custom_usage or self.storage.usage

    # -- the RunHost protocol: what an Execution uses (with ``session_id``, ``storage``,
    # ``retry``) --------------------------------------------------------------------------

    @property
    def namespace(self) -> Any:
        return self.ctx.namespace

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
        self.logger.log(level, f"[{self.session_id}] {message}", exc)

    def run_ended(self, execution: Execution) -> None:
        self.stream.wake_all()
        self._completed(execution.run_id, execution.status, execution.output, execution.error)

    def _completed(self, run_id: str, status: str, output: Any = None,
                   error: str | None = None) -> None:
        """Run ``on_complete`` for a run that ended (in the background, never raising)."""
        hook = self.config.hooks.on_complete
        if hook is not None:
            context = CompleteContext(self.env, self.session_id, run_id, status, output, error)
            self.spawn(self._safe_hook(hook, context))

    def usage_committed(self, usage: list[dict[str, Any]]) -> None:
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

        self.storage.publish(self.storage.commit(status="interrupted")[1])
        self.log("info", f"recovered run {session['run_id']} as interrupted at step {step}")
        # The run ended, though no task of this host saw it end: on_complete hears of it.
        self._completed(session["run_id"], "interrupted")

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
            if handler is not None:
                return await handler(request)
            if request.method == "GET":
                read = reads.READS.get(request.path) or next(
                    (r for prefix, r in reads.PREFIX_READS.items()
                     if request.path.startswith(prefix)), None)
                if read is not None:
                    return await read(request, self)
            return self._no_route(request)
        except _Answered as answered:
            return answered.response
        except (BackendError, UserError) as exc:
            return refusal_response(exc)
        except Exception as exc:
            self.log("error", f"{request.method} {request.path} failed", exc)
            return error_response(500, "internal_error",
                                  "The agent server hit an unexpected error; see its log.")

    def _no_route(self, request: Request) -> Response:
        routes = {*self._routes, *(("GET", p) for p in reads.READS)}
        paths = sorted({p for _, p in routes} | set(self.config.endpoints))
        if any(p == request.path for _, p in routes):
            methods = sorted(m for m, p in routes if p == request.path)
            return error_response(405, "method_not_allowed",
                                  f"{request.method} is not allowed on {request.path}; "
                                  f"use {' or '.join(methods)}.")
        prefixes = ", ".join(f"{p}{{id}}" for p in reads.PREFIX_READS)
        return error_response(404, "not_found", f"No endpoint {request.method} {request.path}. "
                              f"Endpoints: {', '.join(paths)}, {prefixes}.")

    # -- helpers ---------------------------------------------------------------------------

    def _resolve(self, agent_type: str, session_id: str, run_id: str,
                 user_id: str | None = None, parent_type: str | None = None) -> Agent:
        context = AgentFactoryContext(self.env, session_id, run_id, user_id)
        resolve = _resolver(self.config.agents)
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

    def describe_agent(self) -> dict[str, Any] | None:
        """The session's agent as its model sees it, for exports; ``None`` when it cannot
        be built here (a factory that needs what this host lacks)."""
        row = self.store.get_session()
        if row is None:
            return None
        try:
            agent = self._resolve(row["agent_type"], self.session_id, row["run_id"] or "",
                                  row["user_id"], row["metadata"].get("parentAgentType"))
        except Exception:
            return None
        return {"model": agent.llm_config.model, "system": agent.system_prompt,
                "tools": tool_specs(agent)}

    def _require_idle(self, action: str) -> None:
        if self.is_executing:
            run_id = self.execution.run_id if self.execution else "?"
            raise ConflictError(f"Session {self.session_id!r} is executing run {run_id}; "
                                f"interrupt or abort it before you {action}.",
                                code="already_executing")

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

    def _begin(self, plan: RunPlan) -> Execution:
        """Write the run's starting checkpoint and launch it.

        A new session's row (``plan.create``) is written in the same transaction as its
        first checkpoint: a host killed in between must not leave a session with no
        checkpoint, which could be neither started again nor resumed."""
        parent = plan.parent
        step = parent.step if parent else 0
        llm = self.config.llm_adapter(self.env, LLMAdapterContext(
            self.session_id, plan.agent.name, plan.run_id))
        cp_id = checkpoint_id(self.session_id, step)
        self.stream.write(plan.chunk, run_id=plan.run_id, step=step)
        cp_chunk = self.stream.write({"type": "checkpoint", "checkpointId": cp_id, "step": step,
                                      "branch": plan.branch}, run_id=plan.run_id, step=step)
        keep_prefix = parent is not None and plan.fresh_messages is None
        base_head = parent.message_head if parent and keep_prefix else None
        base_count = parent.message_count if parent and keep_prefix else 0
        if plan.base is not None:
            base_head, base_count = plan.base
        to_append = (plan.fresh_messages or []) + plan.append

        def write() -> Checkpoint:
            if plan.create is not None:
                plan.create()
            head = self.store.append_messages(base_head, to_append)
            cp = self.store.save_checkpoint(
                session_id=self.session_id, parent=parent, parent_state=plan.parent_state,
                state=plan.state, run_id=plan.run_id, step=step, branch=plan.branch,
                message_head=head, message_count=base_count + len(to_append), status="running",
                sequence=cp_chunk["sequence"], cp_id=cp_id)
            if plan.pending is not None:
                self.storage.pending.carry(plan.pending, cp.id)
            if plan.budget is not None:
                self._set_budget(plan.budget)
            return cp

        cp, chunks = self.storage.commit(write, status="running", run_id=plan.run_id,
                                         head_checkpoint=cp_id, output=None, error=None)
        execution = Execution(self, plan.agent, llm, run_id=plan.run_id, head=cp,
                              state=plan.state, messages=[], pending=plan.pending,
                              budget_usd=self._budget(plan.agent),
                              spent_usd=self.usage.spent_usd())
        self.execution = execution
        self.storage.publish(chunks)
        execution.start()
        return execution

    def _started(self, execution: Execution, status: str) -> dict[str, Any]:
        return {**self._started_body(status), "runId": execution.run_id}

    async def _before(self, hook: Callable[..., Any] | None, context_type: type[Any],
                      request: Request, body: Any) -> None:
        """Run a ``before_*`` hook; if it aborts the request, raise :class:`_Answered` with
        the response it answers with (:meth:`fetch` sends it).

        The hook gets ``context_type(env, request, body, execution_state)``. The seed's ``AbortResult`` is ``{abort: true, response}``: a plain dict of that
        shape aborts as the :class:`AbortResult` dataclass does."""
        result = await call_hook(hook, context_type(self.env, request, body,
                                                    self.execution_state))
        if isinstance(result, dict):
            abort, response = result.get("abort"), result.get("response")
        else:
            abort, response = getattr(result, "abort", None), getattr(result, "response", None)
        if not abort:
            return
        if not isinstance(response, Response):
            raise TypeError(f"A before_* hook aborted with {response!r} as its response; "
                            "return {'abort': True, 'response': Response(...)}.")
        raise _Answered(response)

    def _handle(self, execution: Execution, agent_type: str) -> AgentHandle:
        """The handle ``after_*`` hooks get: a real one, over this very object."""
        return AgentHandle(ObjectClient(self), self.session_id, execution.run_id, agent_type)

    def current_handle(self) -> AgentHandle | None:
        """A handle on the running run, for ``ExecutionState.get_handle()``."""
        if self.execution is None or not self.is_executing:
            return None
        return self._handle(self.execution, self.execution.agent.name)

    def _idle_session(self, agent_type: str, action: str) -> dict[str, Any]:
        """The session that /resume and /retry go on: it exists, nothing runs in it, and
        their ``agentType`` names its agent, as the seed says."""
        self._require_idle(action)
        session = reads.require_session(self)
        if agent_type != session["agent_type"]:
            raise ConflictError(f"Session {self.session_id!r} runs agent "
                                f"{session['agent_type']!r}, not {agent_type!r}; send "
                                f"agentType {session['agent_type']!r}, or start a new session "
                                f"to run {agent_type!r}.", code="agent_type_mismatch")
        return session

    def _aborted(self, session: dict[str, Any]) -> bool:
        """Whether the session's last run was aborted (its last chunk says so)."""
        if session["status"] != "failed":
            return False
        self.stream.flush()
        last = self.stream.read(self.stream.sequence - 1, 1)
        return bool(last) and last[0]["type"] == "run_failed" and bool(last[0].get("aborted"))

    def _session_agent(self, session: dict[str, Any], run_id: str) -> Agent:
        return self._resolve(session["agent_type"], self.session_id, run_id,
                             session["user_id"], session["metadata"].get("parentAgentType"))

    # -- POST endpoints: each plans a run, and _begin starts it ------------------------------

    async def _start(self, request: Request) -> Response:
        hooks = self.config.hooks
        if hooks.transform_request is not None:
            raw = request.json()
            shaped = await call_hook(hooks.transform_request, raw, self.env)
            body = validate_body(StartAgentRequestV2, shaped)
        else:
            body = parse_body(request, StartAgentRequestV2)
        session = self.store.get_session()
        if session and session["session_id"] != body.session_id:
            raise ConflictError(f"This object holds session {session['session_id']!r}, "
                                f"not {body.session_id!r}.", code="session_mismatch")
        if session and session["agent_type"] != body.agent_type:
            raise ConflictError(f"Session {body.session_id!r} runs agent "
                                f"{session['agent_type']!r}; start a new session to run "
                                f"{body.agent_type!r}.", code="agent_type_mismatch")
        run_id = new_run_id()
        metadata = body.metadata or {}
        agent = self._resolve(body.agent_type, body.session_id, run_id, body.user_id,
                              metadata.get("parentAgentType"))
        await self._before(hooks.before_start, BeforeStartContext, request, body)
        self._require_idle("start a new run")
        message = {"role": "user", "content": body.input.message}
        chunk = {"type": "run_started", "agentType": agent.name, "message": body.input.message}
        if session is None:
            state = self._validate_state(agent, body.input.state or {}, "input.state")
            prior = body.input.messages or []
            self._check_messages(prior, "input.messages")

            def create_session() -> None:
                self.store.create_session(body.session_id, body.agent_type, user_id=body.user_id,
                                          tags=body.tags, metadata=body.metadata)

            self._adopt_session(body.session_id, body.agent_type)
            plan = RunPlan(agent, run_id, chunk, state=state, branch=0,
                           append=[*prior, message], create=create_session,
                           budget=body.max_cost_usd)
        else:
            parent = reads.head_checkpoint(self, session)
            parent_state = self.store.state_at(parent.id)
            state = (self._validate_state(agent, body.input.state, "input.state")
                     if body.input.state is not None else parent_state)
            plan = RunPlan(agent, run_id, chunk, state=state, branch=parent.branch,
                           parent=parent, parent_state=parent_state, append=[message],
                           budget=body.max_cost_usd)
        execution = self._begin(plan)
        await call_hook(hooks.after_start, AfterStartContext(
            self.env, self.session_id, run_id, agent.name, self._handle(execution, agent.name)))
        response = self._started(execution, "started")
        if hooks.transform_response is not None:
            transformed = await call_hook(hooks.transform_response, response,
                                          {"sessionId": self.session_id,
                                           "agentType": agent.name})
            return json_response(transformed)
        return json_response(response)

    def _adopt_session(self, session_id: str, agent_type: str) -> None:
        """This object now holds ``session_id``: stamp its chunks and usage with it."""
        self.session_id = session_id
        self.usage.session_id = session_id
        if self.config.usage_store is not None:
            self.custom_usage = self.config.usage_store(self.env, session_id)
        self.stream.agent_id, self.stream.agent_type = session_id, agent_type

    async def _resume(self, request: Request) -> Response:
        body = parse_body(request, ResumeAgentRequestV2, optional=True)
        await self._before(self.config.hooks.before_resume, BeforeResumeContext, request, body)
        session = self._idle_session(body.agent_type, "resume")
        options = body.options
        if options.mode == "retry":
            return await self._launch_retry(session, "from_checkpoint", None, "resumed")
        run_id = new_run_id()
        agent = self._session_agent(session, run_id)
        append = options.append_messages or []
        self._check_messages(append, "options.appendMessages")
        forking = options.mode == "branch" or bool(options.checkpoint_id)
        if options.edit_tool_results is not None and not forking:
            raise BadRequestError("options.editToolResults needs mode 'branch' and a "
                                  "checkpointId.", field="options.editToolResults")
        base, edited = None, []
        if forking:
            if not options.checkpoint_id:
                raise BadRequestError("options.checkpointId is required for mode 'branch'.",
                                      field="options.checkpointId")
            parent = reads.find_checkpoint(self, options.checkpoint_id)
            if options.edit_tool_results is not None:
                # Fork where the edited results were made, with them replaced.
                edit = plan_edits(self.sql, parent.message_head, options.edit_tool_results)
                parent = reads.find_checkpoint(self, edit.checkpoint_id)
                base, edited = (edit.base_head, parent.message_count - 1), edit.edited
                append = [edit.message, *append]
        else:
            if session["status"] == "paused":
                raise ConflictError(f"Session {self.session_id!r} is paused: tool calls wait "
                                    "for approval. POST /approve with a decision for each "
                                    "(GET /status lists pendingApprovals), or interrupt or "
                                    "abort it.", code="approval_pending")
            if session["status"] not in RESUMABLE:
                raise ConflictError(f"Session {self.session_id!r} is {session['status']} and "
                                    "cannot be resumed. Send a new message, retry it, or "
                                    "branch from a checkpoint.", code="not_resumable")
            parent = reads.head_checkpoint(self, session)
        kept = None if edited else self.storage.pending.get(parent.id)
        if kept is not None and (append or options.modify_state is not None):
            # A changed conversation or state: the model is asked for that step again.
            kept, parent = None, self._before_pending(parent)
        parent_state = self.store.state_at(parent.id)
        # Validated before a branch number is taken: a rejected request changes nothing.
        state = self._modified_state(agent, parent_state, options.modify_state)
        if forking:
            branch = self.store.new_branch()
            chunk = {"type": "run_resumed", "mode": "branch", "fromCheckpointId": parent.id,
                     "branch": branch}
            if edited:
                chunk["editedToolResults"] = edited
        else:
            branch = parent.branch
            chunk = {"type": "run_resumed", "mode": "continue", "fromCheckpointId": parent.id}
        if kept is not None and kept.waiting():
            # The step was waiting for approval when it stopped: it waits again.
            self._repause(parent, kept, branch, chunk, options.max_cost_usd)
            return json_response({**self._started_body("paused"), "runId": None})
        execution = self._begin(RunPlan(agent, run_id, chunk, state=state, branch=branch,
                                        parent=parent, parent_state=parent_state,
                                        append=append, base=base, pending=kept,
                                        budget=options.max_cost_usd))
        await call_hook(self.config.hooks.after_resume, AfterStartContext(
            self.env, self.session_id, run_id, agent.name, self._handle(execution, agent.name)))
        return json_response(self._started(execution, "resumed"))

    def _before_pending(self, cp: Checkpoint) -> Checkpoint:
        """The checkpoint before a kept (paused) turn: where that step's model call began."""
        while cp.parent_id and self.storage.pending.get(cp.id) is not None:
            parent = self.store.get_checkpoint(cp.parent_id)
            if parent is None:  # `or cp` here would spin forever on a missing parent
                break
            cp = parent
        return cp

    def _started_body(self, status: str) -> dict[str, Any]:
        return {"sessionId": self.session_id, "streamId": self.session_id, "status": status}

    def _repause(self, parent: Checkpoint, kept: PendingTurn, branch: int,
                 chunk: dict[str, Any], budget: float | None) -> None:
        """Put a session whose step waited for approval back into ``paused``, at once."""
        run_id = new_run_id()
        step = parent.step
        cp_id = checkpoint_id(self.session_id, step)
        self.stream.write(chunk, run_id=run_id, step=step)
        cp_chunk = self.stream.write({"type": "checkpoint", "checkpointId": cp_id, "step": step,
                                      "branch": branch, "status": "paused"},
                                     run_id=run_id, step=step)
        for call in kept.waiting():
            self.stream.write({"type": "approval_required", "toolCallId": call["id"],
                               "toolName": call["name"], "input": call["input"],
                               "checkpointId": cp_id}, run_id=run_id, step=step)
        state = self.store.state_at(parent.id)

        def write() -> None:
            self.store.save_checkpoint(
                session_id=self.session_id, parent=parent, parent_state=state, state=state,
                run_id=run_id, step=step, branch=branch, message_head=parent.message_head,
                message_count=parent.message_count, status="paused",
                sequence=cp_chunk["sequence"], cp_id=cp_id)
            self.storage.pending.carry(kept, cp_id)
            if budget is not None:
                self._set_budget(budget)

        _, chunks = self.storage.commit(write, status="paused", run_id=run_id,
                                        head_checkpoint=cp_id, output=None, error=None)
        self.storage.publish(chunks)

    def _budget(self, agent: Agent) -> float | None:
        """The session's budget: the last one a request gave, else the agent's."""
        rows = self.sql.exec("SELECT value FROM helix_meta WHERE key = 'budget_usd'")
        return float(rows[0]["value"]) if rows else agent.llm_config.max_cost_usd

    def _set_budget(self, budget: float) -> None:
        self.sql.exec("INSERT OR REPLACE INTO helix_meta (key, value) VALUES ('budget_usd', ?)",
                      repr(float(budget)))

    # -- approvals -------------------------------------------------------------------------

    async def _approve(self, request: Request) -> Response:
        body = parse_body(request, ApproveRequest)
        session = reads.require_session(self)
        kept = None
        if session["status"] == "paused" and not self.is_executing:
            kept = self.storage.pending.get(session["head_checkpoint"])
        if kept is None:
            raise ConflictError(f"Session {self.session_id!r} is {session['status']}; nothing "
                                "waits for approval.", code="not_paused")
        head = reads.head_checkpoint(self, session)
        run_id = new_run_id()
        agent = self._session_agent(session, run_id)
        decided = check_decisions(kept, body, agent.find_tool)
        kept.decisions.update(decided)
        for tool_call_id, decision in decided.items():
            self.stream.write({"type": "approval_resolved", "toolCallId": tool_call_id,
                               "action": decision["action"]},
                              run_id=session["run_id"], step=head.step)
        if kept.waiting():  # more calls to decide: record these, stay paused
            self.storage.publish(self.storage.commit(lambda: self.storage.pending.save(kept))[1])
            return json_response({**reads.status_body(self), "runId": None})
        parent_state = self.store.state_at(head.id)
        execution = self._begin(RunPlan(
            agent, run_id, {"type": "run_resumed", "mode": "approval",
                            "fromCheckpointId": head.id},
            state=parent_state, branch=head.branch, parent=head, parent_state=parent_state,
            pending=kept,
            # The decisions are stored with the run that carries them out.
            create=lambda: self.storage.pending.save(kept)))
        return json_response(self._started(execution, "resumed"))

    def _modified_state(self, agent: Agent, state: dict[str, Any], change: Any) -> dict[str, Any]:
        """``modifyState``: an object merged into the state, or a JSON patch."""
        if change is None:
            return state
        if isinstance(change, list):
            try:
                new = apply_patch(state, change)
            except JsonPatchError as exc:
                raise BadRequestError(f"options.modifyState: {exc}",
                                      field="options.modifyState") from None
        elif isinstance(change, dict):
            new = {**state, **change}
        else:
            raise BadRequestError("options.modifyState must be an object (merged into the "
                                  "state) or a JSON patch list.", field="options.modifyState")
        return self._validate_state(agent, new, "options.modifyState")

    async def _retry(self, request: Request) -> Response:
        body = parse_body(request, RetryAgentRequestV2, optional=True)
        await self._before(self.config.hooks.before_retry, BeforeRetryContext, request, body)
        session = self._idle_session(body.agent_type, "retry")
        return await self._launch_retry(session, body.options.mode, body.options.message,
                                        "started")

    async def _launch_retry(self, session: dict[str, Any], mode: str, message: str | None,
                            status: str) -> Response:
        if mode != "from_start" and self._aborted(session):
            # from_start is a new branch from the root, not the aborted run going on.
            raise ConflictError(f"Session {self.session_id!r} was aborted: abort is a hard stop, "
                                "and an aborted run cannot resume. Retry it from the start "
                                "(mode 'from_start'), send a new message (POST /start), or "
                                "branch from a checkpoint with /resume mode 'branch'.",
                                code="aborted")
        run_id = new_run_id()
        agent = self._session_agent(session, run_id)
        # Retrying a step that waits for approval asks the model for that step again.
        head = self._before_pending(reads.head_checkpoint(self, session))
        chunk: dict[str, Any] = {"type": "run_resumed", "mode": f"retry_{mode}"}
        if mode == "from_start":
            root = self.store.first_checkpoint(head)
            root_state = self.store.state_at(root.id)
            fresh = None
            if message is not None:
                prefix = self.store.load_messages(root.message_head)[:-1]
                fresh = [*prefix, {"role": "user", "content": message}]
            plan = RunPlan(agent, run_id, {**chunk, "fromCheckpointId": root.id},
                           state=root_state, branch=self.store.new_branch(), parent=root,
                           parent_state=root_state, fresh_messages=fresh)
        else:
            if session["status"] == "completed":
                raise ConflictError(f"Session {self.session_id!r} completed; there is nothing "
                                    "to retry. Branch from a checkpoint with /resume mode "
                                    "'branch'.", code="not_retryable")
            head_state = self.store.state_at(head.id)
            plan = RunPlan(agent, run_id, {**chunk, "fromCheckpointId": head.id},
                           state=head_state, branch=head.branch, parent=head,
                           parent_state=head_state,
                           append=[{"role": "user", "content": message}] if message else [])
        execution = self._begin(plan)
        await call_hook(self.config.hooks.after_retry, AfterStartContext(
            self.env, self.session_id, run_id, agent.name, self._handle(execution, agent.name)))
        return json_response(self._started(execution, status))

    async def _interrupt(self, request: Request) -> Response:
        body = parse_body(request, InterruptRequest, optional=True)
        if not self.is_executing and self.status == "paused":
            return json_response(self._interrupt_paused(body.reason))
        if not self.is_executing or self.execution is None:
            raise ConflictError(f"Session {self.session_id or '(new)'!r} is {self.status}; "
                                "there is nothing to interrupt.", code="not_running")
        try:
            await asyncio.wait_for(self.execution.interrupt(body.reason), INTERRUPT_WAIT)
        except TimeoutError:
            return json_response({**reads.status_body(self), "note": "interrupt requested; "
                                  "the current tool has not finished yet"}, status=202)
        return json_response(reads.status_body(self))

    def _interrupt_paused(self, reason: str) -> dict[str, Any]:
        """Interrupt a paused session: ``interrupted``, and its step waits again on resume."""
        session = reads.require_session(self)
        head = reads.head_checkpoint(self, session)
        kept = self.storage.pending.get(head.id)
        cp_id = checkpoint_id(self.session_id, head.step)
        cp_chunk = self.stream.write({"type": "checkpoint", "checkpointId": cp_id,
                                      "step": head.step, "branch": head.branch},
                                     run_id=session["run_id"], step=head.step)
        self.stream.write({"type": "run_interrupted", "reason": reason, "checkpointId": cp_id},
                          run_id=session["run_id"], step=head.step)
        state = self.store.state_at(head.id)

        def write() -> None:
            self.store.save_checkpoint(
                session_id=self.session_id, parent=head, parent_state=state, state=state,
                run_id=session["run_id"], step=head.step, branch=head.branch,
                message_head=head.message_head, message_count=head.message_count,
                status="interrupted", sequence=cp_chunk["sequence"], cp_id=cp_id)
            if kept is not None:
                self.storage.pending.carry(kept, cp_id)

        _, chunks = self.storage.commit(write, status="interrupted", head_checkpoint=cp_id)
        self.storage.publish(chunks)
        return reads.status_body(self)

    async def _abort(self, request: Request) -> Response:
        body = parse_body(request, AbortRequest, optional=True)
        if self.is_executing and self.execution is not None:
            await self.execution.abort(body.reason)
            return json_response(reads.status_body(self))
        session = reads.require_session(self)
        if session["status"] not in RESUMABLE and session["status"] != "paused":
            raise ConflictError(f"Session {self.session_id!r} is {session['status']}; there is "
                                "nothing to abort.", code="not_running")
        error = f"Aborted: {body.reason}"
        self.stream.write({"type": "run_failed", "error": error, "aborted": True},
                          run_id=session["run_id"])
        self.storage.publish(self.storage.commit(status="failed", error=error)[1])
        return json_response(reads.status_body(self))

    # -- WebSockets ------------------------------------------------------------------------

    def _websocket(self, request: Request) -> Response:
        # Any path: the seed's example worker forwards /ws/{id} to the object unchanged.
        after = reads.int_param(request, "fromSequence", 0)
        ws = request.websocket
        assert ws is not None
        self.stream.attach_socket(ws, after)
        return Response(status=101)

    def websocket_closed(self, ws: WebSocketLike) -> None:
        self.stream.detach_socket(ws)


def create_agent_server(
    *,
    llm_adapter: LLMAdapterFactory,
    agents: AgentResolverInterface | AgentResolver,
    hooks: ServerHooks | None = None,
    endpoints: dict[str, EndpointHandler] | None = None,
    usage_store: UsageStoreFactory | None = None,
    logger: Any = None,
    retry: RetryPolicy | None = None,
) -> type[AgentServer]:
    """Build the Durable Object class: ``AgentServer = create_agent_server(...)``.

    ``agents`` is an :class:`AgentRegistry`, any object with ``resolve(agent_type, ctx)``
    and ``has(agent_type)`` (the seed's ``AgentResolverInterface``), or a resolver
    function ``(agent_type, ctx) -> Agent``. ``logger`` is the seed's ``Logger`` (``warn``)
    or a stdlib logger; with none, the server logs nothing."""
    if not callable(llm_adapter):
        raise UserError("llm_adapter must be a factory: (env, context) -> LLMAdapter.")
    _resolver(agents)  # refuses anything else, naming the shapes it takes
    for path in endpoints or {}:
        if not path.startswith("/"):
            raise UserError(f"Custom endpoint {path!r} must start with '/'.")
    config = ServerConfig(llm_adapter=llm_adapter, agents=agents, hooks=hooks or ServerHooks(),
                          endpoints=dict(endpoints or {}), usage_store=usage_store,
                          logger=logger, retry=retry or RetryPolicy())
    return type("AgentServer", (AgentServer,), {"config": config})


def _resolver(agents: Any) -> AgentResolver:
    """The ``resolve`` of an ``AgentResolverInterface`` (an ``AgentRegistry`` is one), or a
    resolver function; anything else is a :class:`UserError` naming both shapes."""
    resolve = getattr(agents, "resolve", None)
    if callable(resolve) and callable(getattr(agents, "has", None)):
        return resolve  # type: ignore[no-any-return]
    if callable(agents) and not isinstance(agents, type):
        return agents  # type: ignore[no-any-return]
    raise UserError("agents must be an AgentRegistry, an object with resolve(agent_type, ctx) "
                    "and has(agent_type), or a resolver function (agent_type, ctx) -> Agent; "
                    f"got {agents!r}.")
