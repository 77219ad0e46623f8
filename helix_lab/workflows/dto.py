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


class AgentWorkflowInput(WireModel):
    """The params of one workflow instance: one run of an agent in a session."""

    agent_type: str
    session_id: str
    run_id: str
    message: str | None = None
    state: dict[str, Any] | None = None
    parent_session_id: str | None = None
    parent_instance_id: str | None = None
    parent_event_type: str | None = None
    """The event type the parent waits on for this sub-agent's completion."""


class AgentWorkflowResult(WireModel):
    session_id: str
    run_id: str
    status: Literal["completed", "failed", "interrupted"]
    output: Any = None
    error: str | None = None
    steps: int = 0


class InitializeAgentInput(WireModel):
    agent_type: str
    session_id: str
    run_id: str
    message: str | None = None
    state: dict[str, Any] | None = None


class ExecuteAgentStepInput(WireModel):
    session_id: str
    run_id: str
    agent_type: str
    step: int
    steps_this_run: int


class StepOutcome(WireModel):
    """What ``execute_agent_step`` stores: the model's turn, or why there was none."""

    interrupted: str | None = None
    turn: dict[str, Any] | None = None
    force_finish: bool = False
    at_limit: bool = False


class ExecuteToolCallInput(WireModel):
    session_id: str
    run_id: str
    agent_type: str
    step: int
    index: int
    tool_call: dict[str, Any]
    state: dict[str, Any]


class ToolCallResult(WireModel):
    block: dict[str, Any]
    state: dict[str, Any]
    final: dict[str, Any] | None = None
    usage: list[dict[str, Any]] = []


class RegisterSubAgentsInput(WireModel):
    session_id: str
    tool_call_id: str
    child_session_id: str
    child_agent_type: str
    message: str


class RecordSubAgentResultInput(WireModel):
    session_id: str
    tool_call_id: str
    child_session_id: str
    child_agent_type: str
    status: str
    output: Any = None
    error: str | None = None


class MarkAgentFailedInput(WireModel):
    session_id: str
    run_id: str
    error: str


class EndAgentStreamInput(WireModel):
    session_id: str
    run_id: str


class FailAgentStreamInput(WireModel):
    session_id: str
    run_id: str
    error: str


class SubAgentCompletionEvent(WireModel):
    """Sent by a child instance to its parent's ``wait_for_event`` when it ends."""

    child_session_id: str
    child_agent_type: str
    status: Literal["completed", "failed", "interrupted"]
    output: Any = None
    error: str | None = None
