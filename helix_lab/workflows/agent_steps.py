"""``AgentSteps``: the pieces of an agent run, each one a memoized ``step.do``.

- ``initialize_agent_state``: the session row, the user's message, the starting state;
- ``execute_agent_step``: one model call (or the news that an interrupt was asked for);
- ``execute_tool_call``: one tool call, with the state it leaves behind;
- ``commit_step``: the step's messages, state, usage and checkpoint, in one D1 batch;
- and the run's edges: ``mark_interrupted``, ``resume_run``, ``start_subagent``,
  ``record_subagent``, ``mark_failed``, ``end_stream``, ``notify_parent``.

A step's chunks go to the session's ``StreamServer`` before the step's result is stored,
so a stored step never lacks its chunks. A step that dies half-way runs again (a new
attempt): the chunks of the dead attempt stay, followed by a ``workflow_step`` chunk
saying the step was retried. Every executed step ends with a ``workflow_step`` chunk
(``ran`` or ``retried``, with its attempt count), and the first executed step of a replay
announces how many steps were served from storage (``workflow_resumed``).

The model call and the tool call are the DO executor's own logic
(:mod:`helix_lab.runtime.turns`), not a copy of it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..agent import Agent
from ..llm.base import LLMAdapter, LLMError
from ..runtime.chunks import usage_fields
from ..runtime.jsonpatch import make_patch
from ..runtime.registry import AgentFactoryContext
from ..runtime.state_store import checkpoint_id
from ..runtime.turns import (
    build_request,
    call_tool,
    changed_state,
    consume_turn,
    must_finish,
    run_tool_call,
    tool_result_block,
)
from ..tools import AbortSignal, ToolContext, ToolResultNotJSONError
from .dto import (
    AgentWorkflowInput,
    ExecuteAgentStepInput,
    ExecuteToolCallInput,
    StepOutcome,
    SubAgentCompletionEvent,
    ToolCallResult,
)
from .errors import NonRetryableError
from .state import D1StateStore
from .streams import DurableObjectStreamManager

__all__ = ["AgentSteps", "WorkflowDependencies", "subagent_event_type"]

MODEL_STEP_CONFIG = {"retries": {"limit": 4, "delay": 500, "backoff": "exponential"},
                     "timeout": "10 minutes"}
"""Transient model errors are retried by the step itself, visibly (``workflow_step``)."""
EDGE_STEP_CONFIG = {"retries": {"limit": 3, "delay": 100, "backoff": "exponential"}}


def subagent_event_type(tool_call_id: str) -> str:
    """The event a parent waits on for the sub-agent of one tool call."""
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in tool_call_id)
    return f"subagent-{safe}"[:100]


@dataclass
class WorkflowDependencies:
    """What ``run_agent_workflow`` needs, as the seed's ``WorkflowDependencies``."""

    state_store: D1StateStore
    stream_manager: DurableObjectStreamManager
    llm_adapter: Any
    """An adapter, or a factory ``(env, LLMAdapterContext) -> adapter``."""
    registry: Any
    workflow_binding: Any = None
    env: Any = None
    logger: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


class _ChunkWriter:
    """Chunks of one step attempt, sent in order by ``send`` (to the StreamServer), a
    batch at a time; each carries ``stamp``, its ``runId`` and ``step``."""

    def __init__(self, send: Callable[[list[dict[str, Any]]], Awaitable[Any]],
                 stamp: dict[str, Any]) -> None:
        self._send = send
        self._stamp = stamp
        self._buffer: list[dict[str, Any]] = []
        self._tail: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def __call__(self, chunk: dict[str, Any]) -> None:
        json.dumps(chunk)  # refuse what cannot be sent before it takes a place in line
        self._buffer.append({**chunk, **self._stamp})
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._pump())

    def last(self, chunk: dict[str, Any]) -> None:
        """Send ``chunk`` after every other chunk of the step (a run's final chunk)."""
        json.dumps(chunk)
        self._tail.append({**chunk, **self._stamp})

    def cancel(self) -> None:
        """The step was cancelled (terminated, restarted): send nothing more."""
        self._buffer, self._tail = [], []
        if self._task is not None:
            self._task.cancel()

    async def _pump(self) -> None:
        while self._buffer:
            batch, self._buffer = self._buffer, []
            await self._send(batch)

    async def drain(self) -> None:
        """Wait until every chunk emitted so far, then the ``last`` ones, is stored."""
        if self._task is not None:
            await self._task
        self._buffer += self._tail
        self._tail = []
        await self._pump()


class _StagedState:
    """The :class:`~helix_lab.runtime.turns.ToolHost` of one tool call's step."""

    def __init__(self, agent: Agent, state: dict[str, Any], emit: _ChunkWriter) -> None:
        self.agent = agent
        self.working: Any = agent.load_state(state)
        self._emit = emit
        self.usage: list[dict[str, Any]] = []

    def get_state(self) -> Any:
        return self.working

    def update_state(self, change: Any) -> None:
        self.working = changed_state(self.agent, self.working, change)

    async def emit(self, chunk: dict[str, Any]) -> None:
        self._emit(chunk)

    def record_usage(self, entry: dict[str, Any]) -> None:
        self.usage.append(entry)

    def dump(self) -> dict[str, Any]:
        return self.agent.validate_state(self.working)


class AgentSteps:
    """The memoized steps of one pass of ``run_agent_workflow`` (see the module docstring)."""

    def __init__(self, deps: WorkflowDependencies) -> None:
        self.deps = deps
        self.store = deps.state_store
        self.streams = deps.stream_manager
        self._memoized = 0
        self._announced = False
        self._executed = 0
        self._agents: dict[str, Agent] = {}
        self._specs: dict[str, list[dict[str, Any]]] = {}
        self._adapters: dict[str, LLMAdapter] = {}

    # -- plumbing -----------------------------------------------------------------------

    def resolve(self, input: AgentWorkflowInput) -> Agent:
        agent = self._agents.get(input.agent_type)
        if agent is None:
            registry = self.deps.registry
            context = AgentFactoryContext(self.deps.env, input.session_id, input.run_id)
            agent = (registry.resolve(input.agent_type, context) if hasattr(registry, "resolve")
                     else registry(input.agent_type, context))
            self._agents[input.agent_type] = agent
        return agent

    def _llm(self, input: AgentWorkflowInput | ExecuteAgentStepInput) -> LLMAdapter:
        adapter = self.deps.llm_adapter
        if hasattr(adapter, "stream"):
            return adapter  # type: ignore[no-any-return]
        made = self._adapters.get(input.run_id)
        if made is None:  # one adapter per run, as the DO approach makes one per run
            from ..runtime.server import LLMAdapterContext

            made = self._adapters[input.run_id] = adapter(
                self.deps.env, LLMAdapterContext(input.session_id, input.agent_type,
                                                 input.run_id))
        return made

    def _log(self, level: str, message: str, exc: BaseException | None = None) -> None:
        logger = self.deps.logger
        if logger is not None:
            getattr(logger, level, logger.info)(f"{message}: {exc}" if exc else message)

    async def _do(self, step: Any, name: str, session_id: str, agent_type: str, run_id: str,
                  number: int, body: Callable[[_ChunkWriter], Awaitable[Any]],
                  config: dict[str, Any] | None = None, *, quiet: bool = False,
                  end_after: bool = False) -> Any:
        """``step.do(name)`` around ``body(emit)``: its chunks are stored before it returns.

        ``end_after`` ends the stream once the step's last chunk is stored (readers stop
        there); ``quiet`` leaves out the step's ``workflow_step`` chunk."""
        ran = {"yes": False}

        @step.do(name, config=config or EDGE_STEP_CONFIG)
        async def run_step(ctx: dict[str, Any]) -> Any:
            ran["yes"] = True
            emit = _ChunkWriter(
                functools.partial(self.streams.write, session_id, agent_type=agent_type),
                {"runId": run_id, "step": number})
            if self._memoized and not self._announced:
                emit({"type": "workflow_resumed", "memoizedSteps": self._memoized,
                      "firstStep": name})
            self._announced = True
            attempt = _attempt(ctx)
            try:
                result = await body(emit)
            except asyncio.CancelledError:
                emit.cancel()
                raise
            except Exception as exc:
                emit({"type": "workflow_step", "name": name, "status": "failed",
                      "attempts": attempt, "error": f"{type(exc).__name__}: {exc}"})
                await emit.drain()
                raise
            if not quiet:
                emit({"type": "workflow_step", "name": name,
                      "status": "ran" if attempt == 1 else "retried", "attempts": attempt})
            await emit.drain()
            if end_after:
                await self.streams.end(session_id)
            return result

        result = await run_step()
        if not ran["yes"]:
            self._memoized += 1
        return result

    # -- the steps ----------------------------------------------------------------------

    async def initialize_agent_state(self, step: Any, input: AgentWorkflowInput) -> dict[str, Any]:
        """Append the user's message to the session; ``{"step", "state"}`` to start from."""
        agent = self.resolve(input)

        async def body(emit: _ChunkWriter) -> dict[str, Any]:
            session = await self.store.get_session(input.session_id)
            if session is None:
                raise NonRetryableError(f"Session {input.session_id!r} has no row; start runs "
                                        "through CloudflareAgentExecutor.execute().")
            state = session["state"] or {}
            if input.state is not None:
                state = agent.validate_state({**state, **input.state})
            count = session["message_count"]
            new = [{"role": "user", "content": input.message}] if input.message else []
            await self.store.db.batch(self.store.put_messages(input.session_id, count, new))
            await self.store.update_session(input.session_id, message_count=count + len(new),
                                            state=state, status="running")
            emit({"type": "run_started", "input": {"message": input.message}})
            number = session["step_count"]
            cp_id = checkpoint_id(input.session_id, number)
            await self.store.save_checkpoint(
                checkpoint_id=cp_id, session_id=input.session_id, run_id=input.run_id,
                step=number, message_count=count + len(new), state=state, status="running")
            emit({"type": "checkpoint", "checkpointId": cp_id, "step": number, "branch": 0})
            return {"step": number, "state": state}

        return await self._do(step, "initialize", input.session_id, input.agent_type,
                              input.run_id, 0, body)  # type: ignore[no-any-return]

    async def execute_agent_step(self, step: Any, input: ExecuteAgentStepInput) -> StepOutcome:
        """One model call: its turn, or the interrupt that was asked for instead."""
        agent = self._agents[input.agent_type]

        async def body(emit: _ChunkWriter) -> dict[str, Any]:
            session = await self.store.get_session(input.session_id)
            assert session is not None
            if session["interrupt_reason"]:
                return StepOutcome(interrupted=session["interrupt_reason"]).wire()
            messages = await self.store.load_messages(input.session_id, session["message_count"])
            at_limit = input.steps_this_run >= agent.max_steps
            force = agent.output_schema is not None and (at_limit or must_finish(messages))
            emit({"type": "step_started"})
            specs = self._specs.get(agent.name)
            if specs is None:  # setdefault would build the specs on every call to drop them
                specs = self._specs[agent.name] = agent.tool_specs()
            request = build_request(agent, messages, specs, force_finish=force)
            try:
                turn = await consume_turn(self._llm(input), request,
                                          lambda kind, delta: emit({"type": kind,
                                                                    "delta": delta}))
            except LLMError as exc:
                if not exc.retryable:
                    raise NonRetryableError(f"The model call failed: {exc.message}") from None
                emit({"type": "llm_retry", "error": exc.message, "status": exc.status})
                raise
            emit({"type": "usage", "model": agent.llm_config.model, **usage_fields(turn.usage)})
            return StepOutcome(turn=turn.to_json(), force_finish=force, at_limit=at_limit).wire()

        result = await self._do(step, f"model {input.step}", input.session_id, input.agent_type,
                                input.run_id, input.step, body, MODEL_STEP_CONFIG)
        return StepOutcome.model_validate(result)

    async def execute_tool_call(self, step: Any, input: ExecuteToolCallInput) -> ToolCallResult:
        """One tool call; its result block and the state it leaves."""
        agent = self._agents[input.agent_type]
        call = input.tool_call

        async def body(emit: _ChunkWriter) -> dict[str, Any]:
            host = _StagedState(agent, input.state, emit)

            async def execute(name: str, call: dict[str, Any], ctx: ToolContext) -> Any:
                return await call_tool(agent, call, ctx)

            try:
                block, final = await run_tool_call(
                    agent, call, host, session_id=input.session_id, run_id=input.run_id,
                    step=input.step, abort_signal=AbortSignal(), emit=emit, execute=execute,
                    log=self._log, strict_json=True)
            except ToolResultNotJSONError as exc:
                raise NonRetryableError(
                    f"{exc} A workflow step stores its result, so the run stops here.") from None
            return ToolCallResult(block=block, state=host.dump(), final=final,
                                  usage=[{**u, "runId": input.run_id, "step": input.step}
                                         for u in host.usage]).wire()

        name = f"tool {input.step}.{input.index} {call['name']}"
        result = await self._do(step, name, input.session_id, input.agent_type, input.run_id,
                                input.step, body)
        return ToolCallResult.model_validate(result)

    async def commit_step(self, step: Any, input: AgentWorkflowInput, number: int,
                          new_messages: list[dict[str, Any]], state: dict[str, Any],
                          status: str, output: Any, usage: list[dict[str, Any]]) -> dict[str, Any]:
        """Store the step (idempotently) and emit its state patch and checkpoint."""

        async def body(emit: _ChunkWriter) -> dict[str, Any]:
            session = await self.store.get_session(input.session_id)
            assert session is not None
            patch = make_patch(session["state"] or {}, state)
            if patch:
                emit({"type": "state_patch", "patch": patch})
            cp_id = checkpoint_id(input.session_id, number)
            await self.store.commit_step(
                session_id=input.session_id, run_id=input.run_id, step=number,
                message_count=session["message_count"], new_messages=new_messages, state=state,
                status=status, output=output, checkpoint_id=cp_id,
                usage=[{**u, "sessionId": input.session_id} for u in usage])
            emit({"type": "checkpoint", "checkpointId": cp_id, "step": number, "branch": 0})
            if status == "completed":
                emit.last({"type": "run_completed", "output": output, "checkpointId": cp_id})
            return {"checkpointId": cp_id}

        return await self._do(step, f"commit {number}", input.session_id,  # type: ignore[no-any-return]
                              input.agent_type, input.run_id, number, body)

    async def mark_interrupted(self, step: Any, input: AgentWorkflowInput, number: int,
                               reason: str) -> None:
        async def body(emit: _ChunkWriter) -> None:
            session = await self.store.get_session(input.session_id)
            assert session is not None
            cp_id = checkpoint_id(input.session_id, number)
            await self.store.save_checkpoint(
                checkpoint_id=cp_id, session_id=input.session_id, run_id=input.run_id,
                step=number, message_count=session["message_count"], state=session["state"],
                status="interrupted")
            await self.store.update_session(input.session_id, status="interrupted",
                                            interrupt_reason=None)
            emit({"type": "checkpoint", "checkpointId": cp_id, "step": number, "branch": 0})
            emit.last({"type": "run_interrupted", "reason": reason, "checkpointId": cp_id})

        await self._do(step, f"interrupt {number}", input.session_id, input.agent_type,
                       input.run_id, number, body, end_after=True)

    async def resume_run(self, step: Any, input: AgentWorkflowInput, number: int,
                         payload: dict[str, Any]) -> None:
        async def body(emit: _ChunkWriter) -> None:
            session = await self.store.get_session(input.session_id)
            assert session is not None
            message = payload.get("message")
            count = session["message_count"]
            if isinstance(message, str) and message:
                await self.store.db.batch(self.store.put_messages(
                    input.session_id, count, [{"role": "user", "content": message}]))
                count += 1
            await self.store.update_session(input.session_id, status="running",
                                            message_count=count, interrupt_reason=None)
            await self.streams.open(input.session_id)
            emit({"type": "run_resumed", "mode": payload.get("mode", "continue")})

        await self._do(step, f"resume {number}", input.session_id, input.agent_type,
                       input.run_id, number, body)

    async def start_subagent(self, step: Any, input: AgentWorkflowInput, number: int,
                             call: dict[str, Any], sub: Agent) -> dict[str, Any]:
        """Create the child instance (once) and return what to wait for."""
        message = call["input"].get("message")
        child_id = f"{input.session_id}--{sub.name}-{call['id']}"[:120]

        async def body(emit: _ChunkWriter) -> dict[str, Any]:
            if not isinstance(message, str) or not message:
                return {"error": f"subagent call to {sub.name!r} needs a non-empty 'message'."}
            binding = self.deps.workflow_binding
            if binding is None:
                return {"error": "Sub-agents need workflow_binding in the dependencies."}
            from .executor import start_run

            emit({"type": "subagent_start", "toolCallId": call["id"],
                  "childSessionId": child_id, "childAgentType": sub.name})
            await start_run(binding, self.store, self.streams, agent_type=sub.name,
                            session_id=child_id, message=message, state=None,
                            parent=(input.session_id, input.run_id,
                                    subagent_event_type(call["id"])), reuse=True)
            return {"childSessionId": child_id}

        return await self._do(step, f"subagent {number} {call['id']}",  # type: ignore[no-any-return]
                              input.session_id, input.agent_type, input.run_id, number, body)

    async def record_subagent(self, step: Any, input: AgentWorkflowInput, number: int,
                              call: dict[str, Any], event: SubAgentCompletionEvent,
                              state: dict[str, Any]) -> ToolCallResult:
        async def body(emit: _ChunkWriter) -> dict[str, Any]:
            end = {"type": "subagent_end", "toolCallId": call["id"],
                   "childSessionId": event.child_session_id,
                   "childAgentType": event.child_agent_type, "status": event.status}
            if event.status == "completed":
                emit({**end, "output": event.output})
                result: dict[str, Any] = {"output": event.output}
            else:
                error = event.error or f"the sub-agent ended {event.status}"
                emit({**end, "error": error})
                result = {"error": f"Sub-agent {event.child_agent_type!r} failed: {error}"}
            emit({"type": "tool_end", "toolCallId": call["id"], "toolName": call["name"],
                  **result})
            return ToolCallResult(block=tool_result_block(call, result), state=state).wire()

        result = await self._do(step, f"subagent result {number} {call['id']}", input.session_id,
                                input.agent_type, input.run_id, number, body)
        return ToolCallResult.model_validate(result)

    async def mark_failed(self, step: Any, input: AgentWorkflowInput, error: str) -> None:
        async def body(emit: _ChunkWriter) -> None:
            await self.store.update_session(input.session_id, status="failed", error=error,
                                            interrupt_reason=None)
            emit.last({"type": "run_failed", "error": error, "aborted": False})

        await self._do(step, "fail", input.session_id, input.agent_type, input.run_id, 0, body)

    async def end_stream(self, step: Any, input: AgentWorkflowInput) -> None:
        """Readers without ``follow`` stop here: the run has ended."""

        async def body(emit: _ChunkWriter) -> None:
            return None

        await self._do(step, "end stream", input.session_id, input.agent_type, input.run_id,
                       0, body, quiet=True, end_after=True)

    async def notify_parent(self, step: Any, input: AgentWorkflowInput,
                            event: SubAgentCompletionEvent) -> None:
        """Send ``SubAgentCompletionEvent`` to the parent instance waiting for it."""
        if not (input.parent_instance_id and input.parent_event_type):
            return

        async def body(emit: _ChunkWriter) -> None:
            binding = self.deps.workflow_binding
            if binding is None:
                raise NonRetryableError("A sub-agent needs workflow_binding to tell its parent.")
            parent = await binding.get(input.parent_instance_id)
            await parent.send_event(input.parent_event_type, event.wire())

        await self._do(step, "notify parent", input.session_id, input.agent_type, input.run_id,
                       0, body)


def _attempt(ctx: Any) -> int:
    """The attempt number from a step context (a dict here, an object on Cloudflare)."""
    value = ctx.get("attempt") if isinstance(ctx, dict) else getattr(ctx, "attempt", None)
    return int(value or 1)
