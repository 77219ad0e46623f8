"""``run_agent_workflow(event, step, deps)``: an agent run as a Cloudflare Workflow.

::

    initialize ─► model 1 ─► tool 1.0 … ─► commit 1 ─► model 2 ─► … ─► commit n ─► end stream
                     │ (interrupt asked for)
                     └► interrupt n ─► wait_for_event("resume") ─► resume n ─► model n …

Every box is a memoized ``step.do`` (see :class:`~helix_lab.workflows.AgentSteps`); the
code between them only decides what comes next from step results, so a replay after a
crash walks the same path and runs nothing twice. A sub-agent's tool call starts a child
instance and waits for its ``SubAgentCompletionEvent`` with ``wait_for_event``.

A run that fails (a model error that retries did not fix, ``max_steps``, a tool result
that cannot be stored) is marked ``failed``, its stream gets ``run_failed``, and the
instance ends ``errored``: nothing is left waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..runtime.chunks import usage_fields
from ..runtime.turns import ModelTurn, limit_error
from .agent_steps import AgentSteps, WorkflowDependencies, subagent_event_type
from .dto import (
    AgentWorkflowInput,
    AgentWorkflowResult,
    ExecuteAgentStepInput,
    ExecuteToolCallInput,
    SubAgentCompletionEvent,
    ToolCallResult,
)
from .errors import NonRetryableError

__all__ = ["RESUME_EVENT", "WorkflowRunner", "create_workflow_runner", "run_agent_workflow"]

RESUME_EVENT = "resume"
INTERRUPT_WAIT = "365 days"
"""How long an interrupted run waits for ``resume`` (Cloudflare's longest wait)."""
SUBAGENT_WAIT = "365 days"


def _payload(event: Any) -> Any:
    return event.payload if hasattr(event, "payload") else event["payload"]


async def run_agent_workflow(event: Any, step: Any, deps: WorkflowDependencies) -> dict[str, Any]:
    """Run the agent of ``event.payload`` (an ``AgentWorkflowInput``) to its end."""
    input = AgentWorkflowInput.model_validate(_payload(event))
    steps = AgentSteps(deps)
    agent = steps.resolve(input)
    number = 0
    try:
        init = await steps.initialize_agent_state(step, input)
        state, number, steps_this_run = init["state"], init["step"], 0
        while True:
            number += 1
            steps_this_run += 1
            outcome = await steps.execute_agent_step(step, ExecuteAgentStepInput(
                session_id=input.session_id, run_id=input.run_id, agent_type=input.agent_type,
                step=number, steps_this_run=steps_this_run))
            if outcome.interrupted is not None:
                number -= 1
                steps_this_run -= 1
                await steps.mark_interrupted(step, input, number, outcome.interrupted)
                resumed = await step.wait_for_event(f"wait resume {number}", type=RESUME_EVENT,
                                                    timeout=INTERRUPT_WAIT)
                await steps.resume_run(step, input, number, resumed.get("payload") or {})
                continue
            turn = ModelTurn.from_json(outcome.turn or {})
            usage = [{"kind": "llm", "model": agent.llm_config.model, "runId": input.run_id,
                      "step": number, **usage_fields(turn.usage)}]
            blocks: list[dict[str, Any]] = []
            final: dict[str, Any] | None = None
            for index, call in enumerate(turn.tool_calls):
                sub = agent.find_subagent(call["name"])
                if sub is not None:
                    result = await _run_subagent(steps, step, input, number, call, sub, state)
                else:
                    result = await steps.execute_tool_call(step, ExecuteToolCallInput(
                        session_id=input.session_id, run_id=input.run_id,
                        agent_type=input.agent_type, step=number, index=index, tool_call=call,
                        state=state))
                state = result.state
                blocks.append(result.block)
                usage += result.usage
                if result.final is not None:
                    final = result.final
            new_messages = [turn.message()]
            if blocks:
                new_messages.append({"role": "user", "content": blocks})
            if final is not None:
                status, output = "completed", final["output"]
            elif not turn.tool_calls and agent.output_schema is None:
                status, output = "completed", turn.text
            else:
                status, output = "running", None
            await steps.commit_step(step, input, number, new_messages, state, status, output,
                                    usage)
            if status == "completed":
                break
            if outcome.force_finish or outcome.at_limit:
                raise limit_error(agent, forced=outcome.force_finish)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = str(exc) if isinstance(exc, NonRetryableError) else f"{type(exc).__name__}: {exc}"
        await steps.mark_failed(step, input, error)
        await steps.notify_parent(step, input, SubAgentCompletionEvent(
            child_session_id=input.session_id, child_agent_type=input.agent_type,
            status="failed", error=error))
        await steps.end_stream(step, input)
        raise NonRetryableError(error) from None
    await steps.notify_parent(step, input, SubAgentCompletionEvent(
        child_session_id=input.session_id, child_agent_type=input.agent_type,
        status="completed", output=output))
    await steps.end_stream(step, input)
    return AgentWorkflowResult(session_id=input.session_id, run_id=input.run_id,
                               status="completed", output=output, steps=number).wire()


async def _run_subagent(steps: AgentSteps, step: Any, input: AgentWorkflowInput, number: int,
                        call: dict[str, Any], sub: Any, state: dict[str, Any]) -> ToolCallResult:
    started = await steps.start_subagent(step, input, number, call, sub)
    if "error" in started:
        event = SubAgentCompletionEvent(child_session_id="", child_agent_type=sub.name,
                                        status="failed", error=started["error"])
    else:
        done = await step.wait_for_event(f"wait subagent {number} {call['id']}",
                                         type=subagent_event_type(call["id"]),
                                         timeout=SUBAGENT_WAIT)
        event = SubAgentCompletionEvent.model_validate(done["payload"])
    return await steps.record_subagent(step, input, number, call, event, state)


class WorkflowRunner:
    """``runner.run(event, step)``, as the seed's ``createWorkflowRunner`` returns."""

    def __init__(self, deps: WorkflowDependencies) -> None:
        self.deps = deps

    async def run(self, event: Any, step: Any) -> dict[str, Any]:
        return await run_agent_workflow(event, step, self.deps)

    async def __call__(self, event: Any, step: Any) -> dict[str, Any]:
        return await self.run(event, step)


def create_workflow_runner(*, state_store: Any, stream_manager: Any, llm_adapter: Any,
                           registry: Any, workflow_binding: Any = None, env: Any = None,
                           logger: Any = None) -> WorkflowRunner:
    """A runner bound to its dependencies; pass it to ``LocalWorkflowBinding`` as ``run``."""
    return WorkflowRunner(WorkflowDependencies(
        state_store=state_store, stream_manager=stream_manager, llm_adapter=llm_adapter,
        registry=registry, workflow_binding=workflow_binding, env=env, logger=logger))
