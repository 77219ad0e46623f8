"""The seed's workflow DTOs as pydantic models (camelCase on the wire, unknown keys refused).

``AgentWorkflowInput`` is what ``binding.create(params=...)`` carries; each step's input
and result is one of the models below, so what a step stores is validated both ways.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = [
    "AgentWorkflowInput",
    "AgentWorkflowResult",
    "EndAgentStreamInput",
    "ExecuteAgentStepInput",
    "ExecuteToolCallInput",
    "FailAgentStreamInput",
    "InitializeAgentInput",
    "MarkAgentFailedInput",
    "RecordSubAgentResultInput",
    "RegisterSubAgentsInput",
    "StepOutcome",
    "SubAgentCompletionEvent",
    "ToolCallResult",
    "WireModel",
]


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class _Run(WireModel):
    """Names one run of one session; the models below add what their step needs."""

    session_id: str
    run_id: str


class _Ended(WireModel):
    """How a run ended."""

    status: Literal["completed", "failed", "interrupted"]
    output: Any = None
    error: str | None = None


class InitializeAgentInput(_Run):
    agent_type: str
    message: str | None = None
    state: dict[str, Any] | None = None


class AgentWorkflowInput(InitializeAgentInput):
    """The params of one workflow instance: one run of an agent in a session (what
    initializes it, and the parent to tell when it is a sub-agent's)."""

    parent_session_id: str | None = None
    parent_instance_id: str | None = None
    parent_event_type: str | None = None
    """The event type the parent waits on for this sub-agent's completion."""


class AgentWorkflowResult(_Ended, _Run):
    steps: int = 0


class _StepInput(_Run):
    agent_type: str
    step: int


class ExecuteAgentStepInput(_StepInput):
    steps_this_run: int


class StepOutcome(WireModel):
    """What ``execute_agent_step`` stores: the model's turn, or why there was none."""

    interrupted: str | None = None
    turn: dict[str, Any] | None = None
    force_finish: bool = False
    at_limit: bool = False


class ExecuteToolCallInput(_StepInput):
    index: int
    tool_call: dict[str, Any]
    state: dict[str, Any]


class ToolCallResult(WireModel):
    block: dict[str, Any]
    state: dict[str, Any]
    final: dict[str, Any] | None = None
    usage: list[dict[str, Any]] = []


class _SubAgentCall(WireModel):
    """The tool call that runs a sub-agent, and the child session it runs in."""

    session_id: str
    tool_call_id: str
    child_session_id: str
    child_agent_type: str


class RegisterSubAgentsInput(_SubAgentCall):
    message: str


class RecordSubAgentResultInput(_SubAgentCall):
    status: str
    output: Any = None
    error: str | None = None


class MarkAgentFailedInput(_Run):
    error: str


class EndAgentStreamInput(_Run):
    """The run whose stream ends."""


class FailAgentStreamInput(_Run):
    error: str


class SubAgentCompletionEvent(_Ended):
    """Sent by a child instance to its parent's ``wait_for_event`` when it ends."""

    child_session_id: str
    child_agent_type: str
