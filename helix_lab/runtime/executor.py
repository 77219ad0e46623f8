"""The step loop: one ``Execution`` is one run of an agent, as a task on the event loop.

A step is one model call and the tool calls it asked for. Nothing a step does is
committed until it ends: its messages, state change, usage, checkpoint and the chunks
still queued all go to storage in one transaction. So a run that dies mid-step is found
at its previous checkpoint, with nothing half-written.

Stopping:

- ``interrupt`` is soft. During the model call, or the wait before retrying it, the call
  is cut (nothing of the step is committed); during tools the step finishes first. Either way an ``interrupted``
  checkpoint is written and the run can be resumed.
- ``abort`` is hard: the task is cancelled wherever it is, tools see ``abort_signal``,
  the session becomes ``failed`` and cannot be resumed.
- A budget (``LLMConfig(max_cost_usd=...)`` or the run's ``maxCostUsd``) interrupts the
  run with reason ``budget_exceeded`` at the first step boundary past it.

Pausing: when the model asks for a tool that ``requires_approval``, none of the step's
calls run. The turn is kept (:mod:`.approvals`) under a ``paused`` checkpoint, one
``approval_required`` chunk is sent per waiting call, and the run ends with no task left.
The run that follows the decisions starts from the kept turn instead of calling the model.
"""

from __future__ import annotations

import asyncio
import copy
import random
import secrets
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from ..agent import Agent
from ..errors import RunError, ToolError
from ..llm.base import LLMAdapter, LLMError, LLMRequest
from ..pricing import cost_usd
from ..tools import AbortSignal, ToolContext
from .approvals import PendingTurn, denial_text
from .chunks import usage_fields
from .http import Request
from .inspector import StepRecord
from .jsonpatch import make_patch
from .session_storage import SessionOwner
from .sse import iter_sse_chunks
from .state_store import Checkpoint, checkpoint_id, now_ms
from .stream import Chunk
from .turns import (
    ModelTurn,
    build_request,
    call_tool,
    changed_state,
    consume_turn,
    limit_error,
    must_finish,
    run_tool_call,
    tool_result_block,
)

__all__ = ["Execution", "RetryPolicy", "RunHost"]



@dataclass
class RetryPolicy:
    """Backoff for transient model errors (429, 529, 5xx, dropped connections)."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        backoff = self.base_delay * 2 ** (attempt - 1)
        return min(backoff * (0.75 + random.random() / 2), self.max_delay)


class RunHost(SessionOwner, Protocol):
    """What an :class:`Execution` needs from the object it runs in (an ``AgentServer``).

    The executor knows nothing else of the server: tests and other hosts can run a step
    loop against any object with these members, and a session's ``session_id`` and
    ``storage`` (:class:`~.session_storage.SessionOwner`).
    """

    @property
    def namespace(self) -> Any:
        """Where sub-agents' objects live (``id_from_name``, ``get``), or ``None``."""

    @property
    def retry(self) -> RetryPolicy: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...

    def log(self, level: str, message: str, exc: BaseException | None = None) -> None: ...

    def run_ended(self, execution: Execution) -> None:
        """The run stopped (completed, interrupted or failed); its status is final."""

    def usage_committed(self, entries: list[dict[str, Any]]) -> None:
        """Usage entries were stored with a step (custom usage stores hear of them here)."""


class Execution:
    """One run of ``agent`` in its host's session. Also the hooks' execution handle."""

    def __init__(
        self,
        host: RunHost,
        agent: Agent,
        llm: LLMAdapter,
        *,
        run_id: str,
        head: Checkpoint,
        state: dict[str, Any],
        messages: list[dict[str, Any]],
        pending: PendingTurn | None = None,
        budget_usd: float | None = None,
        spent_usd: float = 0.0,
    ) -> None:
        self.host = host
        self.storage = host.storage
        self.agent = agent
        self.llm = llm
        self.session_id = host.session_id
        self.run_id = run_id
        self.head = head
        self.committed_state = state
        self.working: Any = agent.load_state(copy.deepcopy(state))
        self.messages = messages
        self.abort_signal = AbortSignal()
        self.interrupt_reason: str | None = None
        self.status = "running"
        self.output: Any = None
        self.error: str | None = None
        self.done = False
        self.task: asyncio.Task[None] | None = None
        self._cut: anyio.CancelScope | None = None
        """The model call or retry wait under way, which an interrupt cancels."""
        self._usage: list[dict[str, Any]] = []
        self._children: list[Any] = []
        self._finished = asyncio.Event()
        self._step = head.step
        self._tool_specs: list[dict[str, Any]] | None = None  # built once per run
        self.pending = pending
        """The kept turn of a paused step, which this run completes first."""
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self._interrupt_extra: dict[str, Any] = {}

    # -- the handle ------------------------------------------------------------------------

    @property
    def is_executing(self) -> bool:
        return not self.done

    def start(self) -> None:
        self.task = self.host.spawn(self._run())

    async def result(self) -> Any:
        """Wait for the run to end; its output, or :class:`RunError`."""
        await self._finished.wait()
        if self.status == "failed":
            raise RunError(self.error or "the run failed")
        return self.output

    async def wait(self) -> None:
        await self._finished.wait()

    async def interrupt(self, reason: str = "interrupted") -> None:
        """Stop softly at the next safe point and wait until the run has stopped."""
        if self.done:
            return
        if self.interrupt_reason is None:
            self.interrupt_reason = reason
        if self._cut is not None:
            self._cut.cancel()
        for stub in list(self._children):
            await stub.fetch(Request("POST", "/interrupt", json={"reason": reason}))
        await self._finished.wait()

    async def abort(self, reason: str = "aborted") -> None:
        """Stop at once; the session becomes ``failed`` and cannot be resumed."""
        if self.done:
            return
        self.abort_signal.abort(reason)
        for stub in list(self._children):
            await stub.fetch(Request("POST", "/abort", json={"reason": reason}))
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task})
        if not self.done:
            # A task cancelled before its first step never runs, so _run's handler never
            # records the abort (an abort right after start would otherwise wait forever).
            self._finish_failed(f"Aborted: {self.abort_signal.reason}", aborted=True)
        await self._finished.wait()

    # -- what a ToolContext calls ----------------------------------------------------------

    def get_state(self) -> Any:
        return self.working

    def update_state(self, change: Any) -> None:
        self.working = changed_state(self.agent, self.working, change)

    async def emit(self, chunk: dict[str, Any]) -> None:
        self._emit(chunk, self._step)

    def record_usage(self, entry: dict[str, Any]) -> None:
        self._usage.append({**entry, "runId": self.run_id, "step": self._step})
        self.spent_usd += entry.get("cost") or 0.0

    # -- internals -------------------------------------------------------------------------

    def _emit(self, chunk: dict[str, Any], step: int | None = None) -> Chunk:
        return self.storage.stream.write(chunk, run_id=self.run_id,
                                         step=self._step if step is None else step)

    def _dump_state(self) -> dict[str, Any]:
        return copy.deepcopy(self.agent.validate_state(self.working))

    async def _run(self) -> None:
        try:
            # Loaded here, not when the run is requested, so that starting or resuming
            # answers in constant time however long the history is.
            if not self.messages:
                self.messages = self.storage.state.load_messages(self.head.message_head)
            steps_this_run = 0
            while True:
                if self.pending is None:  # an approved step's model call is paid already
                    self._check_budget()
                if self.interrupt_reason is not None:
                    self._finish_interrupted()
                    return
                steps_this_run += 1
                if self.pending is not None:
                    pending, self.pending = self.pending, None
                    outcome = await self._step_from_pending(pending, steps_this_run)
                else:
                    outcome = await self._step_once(self.head.step + 1, steps_this_run)
                if outcome == "continue":
                    continue
                return
        except asyncio.CancelledError:
            if not self.abort_signal.aborted:
                raise  # the host is shutting down: recovery will find the run interrupted
            self._finish_failed(f"Aborted: {self.abort_signal.reason}", aborted=True)
        except RunError as exc:
            self._finish_failed(str(exc))
        except Exception as exc:  # a bug in user code or ours: fail the run, keep the session
            self.host.log("error", "run failed", exc)
            self._finish_failed(f"{type(exc).__name__}: {exc}")

    async def _step_once(self, step: int, steps_this_run: int) -> str:
        agent = self.agent
        self._step = step
        at_limit = steps_this_run >= agent.max_steps
        force_finish = agent.output_schema is not None and (
            at_limit or must_finish(self.messages))
        self._emit({"type": "step_started"})
        config = agent.llm_config
        request = build_request(agent, self.messages, self._specs(), force_finish=force_finish)
        started = now_ms()
        turn = await self._call_model(request)
        if turn is None:  # cut by interrupt: the step never happened
            self._finish_interrupted()
            return "stopped"
        usage = self._record_model_usage(turn, turn.model or config.model, step)
        record = StepRecord(
            step=step, branch=self.head.branch, request_head=self.head.message_head,
            request_count=self.head.message_count, model=turn.model or config.model,
            started_at=started, first_token_ms=turn.first_token_ms,
            duration_ms=now_ms() - started, usage=usage)
        calls = turn.tool_calls
        waiting = self._needing_approval(calls)
        if waiting:
            self._pause(turn, waiting, record)
            return "stopped"
        return await self._finish_step(turn.message(), calls, {}, turn.text, record,
                                       at_limit=at_limit, force_finish=force_finish)

    async def _step_from_pending(self, pending: PendingTurn, steps_this_run: int) -> str:
        """Complete a paused step from its kept turn, as the decisions say."""
        self._step = pending.step
        message = pending.resolved_message()
        calls = [{"id": c["id"], "name": c["name"], "input": pending.approved_input(c)}
                 for c in pending.calls]
        timing = pending.timing
        text = "".join(b.get("text", "") for b in message["content"]
                       if isinstance(b, dict) and b.get("type") == "text")
        record = StepRecord(
            step=pending.step, branch=self.head.branch, request_head=self.head.message_head,
            request_count=self.head.message_count, model=timing.get("model", ""),
            started_at=timing.get("startedAt", now_ms()),
            first_token_ms=timing.get("firstTokenMs"), duration_ms=timing.get("durationMs", 0),
            usage=timing.get("usage", {}), approvals=pending.approvals())
        at_limit = steps_this_run >= self.agent.max_steps
        return await self._finish_step(message, calls, pending.decisions, text, record,
                                       at_limit=at_limit, force_finish=False)

    async def _finish_step(self, message: dict[str, Any], calls: list[dict[str, Any]],
                           decisions: dict[str, dict[str, Any]], text: str,
                           record: StepRecord, *, at_limit: bool, force_finish: bool) -> str:
        """Run the step's tool calls (denied ones answer with the denial) and commit it."""
        agent = self.agent
        tools_started = now_ms()
        new_messages = [message]
        finish: dict[str, Any] | None = None
        if calls:
            blocks = []
            for call in calls:
                decision = decisions.get(call["id"])
                if decision is not None and decision["action"] == "deny":
                    blocks.append(self._deny(call, decision.get("message")))
                    continue
                block, final = await self._run_tool(call)
                blocks.append(block)
                if final is not None:
                    finish = final
            new_messages.append({"role": "user", "content": blocks})
        record.duration_ms += now_ms() - tools_started
        if finish is not None:
            self._commit(new_messages, status="completed", output=finish["output"],
                         record=record)
            return "stopped"
        if not calls and agent.output_schema is None:
            self._commit(new_messages, status="completed", output=text, record=record)
            return "stopped"
        if force_finish or at_limit:
            self._commit(new_messages, status="running", record=record)
            raise limit_error(agent, forced=force_finish)
        self._commit(new_messages, status="running", record=record)
        return "continue"

    def _record_model_usage(self, turn: ModelTurn, model: str, step: int) -> dict[str, Any]:
        """Queue the call's usage entry, priced, and send its ``usage`` chunk."""
        tokens = usage_fields(turn.usage)
        price = cost_usd(model, input_tokens=tokens["inputTokens"],
                         output_tokens=tokens["outputTokens"],
                         cache_read_tokens=tokens["cacheReadTokens"],
                         cache_write_tokens=tokens["cacheWriteTokens"],
                         pricing=self.agent.llm_config.pricing)
        usage = {**tokens, "costUsd": price}
        self._usage.append({"kind": "llm", "model": model, "runId": self.run_id,
                            "step": step, **usage})
        self.spent_usd += price or 0.0
        self._emit({"type": "usage", "model": model, **usage})
        return usage

    def _check_budget(self) -> None:
        """At a step boundary: past the budget, stop softly with ``budget_exceeded``."""
        budget = self.budget_usd
        if budget is None or self.interrupt_reason is not None or self.spent_usd <= budget:
            return
        self.interrupt_reason = "budget_exceeded"
        self._interrupt_extra = {"budgetUsd": budget, "spentUsd": round(self.spent_usd, 9)}

    def _needing_approval(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        waiting = []
        for call in calls:
            tool = self.agent.find_tool(call["name"])
            if tool is not None and tool.needs_approval(call["input"], self.working):
                waiting.append(call)
        return waiting

    def _deny(self, call: dict[str, Any], message: str | None) -> dict[str, Any]:
        """A denied call: the model gets an error tool_result carrying the message."""
        error = denial_text(message)
        self._emit({"type": "tool_start", "toolCallId": call["id"], "toolName": call["name"],
                    "input": call["input"]})
        self._emit({"type": "tool_end", "toolCallId": call["id"], "toolName": call["name"],
                    "error": error, "denied": True})
        return tool_result_block(call, {"error": error})

    def _specs(self) -> list[dict[str, Any]]:
        """The agent's tool specs; pydantic's schema generation is too slow to redo per step."""
        if self._tool_specs is None:
            self._tool_specs = self.agent.tool_specs()
        return self._tool_specs

    @contextmanager
    def _cuttable(self) -> Iterator[anyio.CancelScope]:
        """A block an interrupt can cut: :meth:`interrupt` cancels it, the block ends, and
        ``scope.cancelled_caught`` tells the code after it. An abort or a host shutdown
        cancels the run's task instead, which goes through the block uncaught."""
        with anyio.CancelScope() as scope:
            self._cut = scope
            try:
                yield scope
            finally:
                self._cut = None

    async def _call_model(self, request: LLMRequest) -> ModelTurn | None:
        """The model's turn, retried with backoff; ``None`` when an interrupt cut it."""
        policy = self.host.retry
        attempt = 0
        while True:
            attempt += 1
            if self.interrupt_reason is not None:
                return None
            turn, exc = None, None
            with self._cuttable() as cut:
                try:
                    turn = await consume_turn(self.llm, request, self._delta_writer())
                except Exception as error:  # whatever the adapter raised; judged below
                    exc = error
            if cut.cancelled_caught:
                return None
            if exc is None:
                return turn
            if isinstance(exc, LLMError) and exc.retryable and attempt < policy.max_attempts:
                delay = policy.delay(attempt, exc.retry_after)
                self._emit({"type": "llm_retry", "attempt": attempt,
                            "maxAttempts": policy.max_attempts, "delayMs": int(delay * 1000),
                            "status": exc.status, "error": exc.message})
                with self._cuttable() as cut:
                    await anyio.sleep(delay)
                if cut.cancelled_caught:
                    return None  # interrupted while waiting to retry
                continue
            if isinstance(exc, LLMError):
                tries = f" after {attempt} attempts" if exc.retryable else ""
                raise RunError(f"The model call failed{tries}: {exc.message}")
            raise RunError(f"The model adapter raised {type(exc).__name__}: {exc}")

    def _delta_writer(self) -> Callable[[str, str], None]:
        """``write_delta(kind, delta)`` for this step's model call, by the stream's direct
        path (bound once per call)."""
        return self.storage.stream.delta_writer(self.run_id, self._step)

    async def _run_tool(self, call: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """One tool call with its hooks (:func:`~.turns.run_tool_call`): its tool_result
        block, and the final output when the call was a valid ``__finish__``."""
        return await run_tool_call(
            self.agent, call, self, session_id=self.session_id, run_id=self.run_id,
            step=self._step, abort_signal=self.abort_signal, emit=self._emit,
            execute=self._execute, log=self.host.log)

    async def _execute(self, name: str, call: dict[str, Any], ctx: ToolContext) -> Any:
        sub = self.agent.find_subagent(name)
        if sub is not None:
            return await self._run_subagent(sub, call)
        return await call_tool(self.agent, call, ctx)

    async def _run_subagent(self, sub: Agent, call: dict[str, Any]) -> Any:
        namespace = self.host.namespace
        if namespace is None:
            raise ToolError("Sub-agents need the server to know its namespace; none is bound.")
        message = call["input"].get("message")
        if not isinstance(message, str) or not message:
            raise ToolError(f"subagent call to {sub.name!r} needs a non-empty 'message'.")
        child_id = f"{self.session_id}--{sub.name}-s{self._step}-{secrets.token_hex(2)}"
        stub = namespace.get(namespace.id_from_name("session:" + child_id))
        # "agentType" is stamped on every chunk as this (the parent's) type, hence
        # "childAgentType" for the sub-agent's.
        self._emit({"type": "subagent_start", "toolCallId": call["id"],
                    "childSessionId": child_id, "childAgentType": sub.name})
        started = await stub.fetch(Request("POST", "/start", json={
            "agentType": sub.name, "sessionId": child_id, "input": {"message": message},
            "metadata": {"parentSessionId": self.session_id, "parentAgentType": self.agent.name},
        }))
        if not started.ok:
            error = started.json().get("error", {}).get("message", f"HTTP {started.status}")
            self._emit({"type": "subagent_end", "toolCallId": call["id"],
                        "childSessionId": child_id, "childAgentType": sub.name,
                        "error": error})
            raise ToolError(f"Sub-agent {sub.name!r} did not start: {error}")
        self._children.append(stub)
        try:
            stream = await stub.fetch(Request("GET", "/sse?fromSequence=0"))
            if stream.stream is not None:
                async for _event, _data in iter_sse_chunks(stream.stream):
                    pass  # the child's own stream is for its own viewers; we wait for its end
            status = (await stub.fetch(Request("GET", "/status"))).json()
        finally:
            self._children.remove(stub)
        end = {"type": "subagent_end", "toolCallId": call["id"], "childSessionId": child_id,
               "childAgentType": sub.name, "status": status.get("status")}
        if status.get("status") != "completed":
            error = status.get("error") or f"the sub-agent ended {status.get('status')}"
            self._emit({**end, "error": error})
            raise ToolError(f"Sub-agent {sub.name!r} failed: {error}")
        self._emit({**end, "output": status.get("output")})
        return status.get("output")

    # -- committing ------------------------------------------------------------------------

    def _commit(self, new_messages: list[dict[str, Any]], *, status: str,
                output: Any = None, record: StepRecord | None = None) -> None:
        """Store one finished step, and end the run when ``status`` says so."""
        storage = self.storage
        state = self._dump_state()
        patch = make_patch(self.committed_state, state)
        if patch:
            self._emit({"type": "state_patch", "patch": patch})
        cp_id = checkpoint_id(self.session_id, self._step)
        cp_chunk = self._emit({"type": "checkpoint", "checkpointId": cp_id, "step": self._step,
                               "branch": self.head.branch})
        if status == "completed":
            self._emit({"type": "run_completed", "output": output, "checkpointId": cp_id})
        usage, self._usage = self._usage, []

        def write() -> Checkpoint:
            head = storage.state.append_messages(self.head.message_head, new_messages)
            for entry in usage:
                storage.usage.record_sync({**entry, "sessionId": self.session_id})
            cp = storage.state.save_checkpoint(
                session_id=self.session_id, parent=self.head, parent_state=self.committed_state,
                state=state, run_id=self.run_id, step=self._step, branch=self.head.branch,
                message_head=head, message_count=self.head.message_count + len(new_messages),
                status=status, sequence=cp_chunk["sequence"], output=output, cp_id=cp_id)
            if record is not None:
                storage.steps.record(cp.id, record)
            return cp

        self.head, chunks = storage.commit(write, status=status, head_checkpoint=cp_id,
                                           output=output, error=None)
        self.messages = self.messages + new_messages
        self.committed_state = state
        if status == "completed":
            self.output = output
            self._end("completed")
        storage.publish(chunks)
        self.host.usage_committed(usage)

    def _pause(self, turn: ModelTurn, waiting: list[dict[str, Any]],
               record: StepRecord) -> None:
        """Keep the turn under a ``paused`` checkpoint and end the run; see the module doc."""
        storage = self.storage
        cp_id = checkpoint_id(self.session_id, self._step)
        cp_chunk = self._emit({"type": "checkpoint", "checkpointId": cp_id, "step": self._step,
                               "branch": self.head.branch, "status": "paused"})
        for call in waiting:
            self._emit({"type": "approval_required", "toolCallId": call["id"],
                        "toolName": call["name"], "input": call["input"],
                        "checkpointId": cp_id})
        waiting_ids = {c["id"] for c in waiting}
        pending = PendingTurn(
            checkpoint_id=cp_id, step=self._step, message=turn.message(),
            calls=[{**c, "requiresApproval": c["id"] in waiting_ids} for c in turn.tool_calls],
            timing={"model": record.model, "startedAt": record.started_at,
                    "firstTokenMs": record.first_token_ms, "durationMs": record.duration_ms,
                    "usage": record.usage})
        usage, self._usage = self._usage, []

        def write() -> Checkpoint:
            for entry in usage:
                storage.usage.record_sync({**entry, "sessionId": self.session_id})
            cp = storage.state.save_checkpoint(
                session_id=self.session_id, parent=self.head, parent_state=self.committed_state,
                state=self.committed_state, run_id=self.run_id, step=self._step,
                branch=self.head.branch, message_head=self.head.message_head,
                message_count=self.head.message_count, status="paused",
                sequence=cp_chunk["sequence"], cp_id=cp_id)
            storage.pending.save(pending)
            return cp

        self.head, chunks = storage.commit(write, status="paused", head_checkpoint=cp_id)
        self._end("paused")
        storage.publish(chunks)
        self.host.usage_committed(usage)

    def _finish_interrupted(self) -> None:
        storage = self.storage
        reason = self.interrupt_reason or "interrupted"
        cp_id = checkpoint_id(self.session_id, self.head.step)
        cp_chunk = self._emit({"type": "checkpoint", "checkpointId": cp_id,
                               "step": self.head.step, "branch": self.head.branch},
                              self.head.step)
        self._emit({"type": "run_interrupted", "reason": reason, "checkpointId": cp_id,
                    **self._interrupt_extra}, self.head.step)

        def write() -> Checkpoint:
            cp = storage.state.save_checkpoint(
                session_id=self.session_id, parent=self.head, parent_state=self.committed_state,
                state=self.committed_state, run_id=self.run_id, step=self.head.step,
                branch=self.head.branch, message_head=self.head.message_head,
                message_count=self.head.message_count, status="interrupted",
                sequence=cp_chunk["sequence"], cp_id=cp_id)
            if self.pending is not None:  # stopped before the approved step: keep it
                storage.pending.carry(self.pending, cp.id)
            return cp

        self.head, chunks = storage.commit(write, status="interrupted", head_checkpoint=cp_id)
        self._end("interrupted")
        storage.publish(chunks)

    def _finish_failed(self, error: str, *, aborted: bool = False) -> None:
        self.error = error
        self._emit({"type": "run_failed", "error": error, "aborted": aborted})
        _, chunks = self.storage.commit(status="failed", error=error)
        self._end("failed")
        self.storage.publish(chunks)

    def _end(self, status: str) -> None:
        self.status = status
        self.done = True
        self._finished.set()
        self.host.run_ended(self)
        # The server keeps the last execution until the next run replaces it: let the
        # conversation go now, so that freeing a long one is paid here, not by the next
        # request (a fork from an early checkpoint after a long run took ~10-20 ms more).
        self.messages = []

