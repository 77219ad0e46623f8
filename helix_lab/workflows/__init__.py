"""The Workflows approach: step-level durability, as Cloudflare Workflows gives it.

Each agent step and each tool call is a memoized ``step.do``: after a crash the instance
continues by itself, and a step that had finished returns its stored result instead of
running again, so no model call is paid twice and no tool runs twice. See CONTRACT §9.

In the kernel, Cloudflare's bindings are emulated: :class:`LocalWorkflowBinding` (the
Workflows binding, instances in SQLite) and :class:`LocalD1` (D1 over sqlite3).
"""

from __future__ import annotations

from .agent_steps import AgentSteps, WorkflowDependencies
from .binding import LocalWorkflowBinding, LocalWorkflowInstance, WorkflowEvent
from .config import (
    DEFAULT_STEP_CONFIG,
    MAX_PAYLOAD_BYTES,
    WorkflowRetryConfig,
    WorkflowStepConfig,
    parse_duration,
)
from .d1 import D1Error, D1PreparedStatement, LocalD1
from .dto import (
    AgentWorkflowInput,
    AgentWorkflowResult,
    EndAgentStreamInput,
    ExecuteAgentStepInput,
    ExecuteToolCallInput,
    FailAgentStreamInput,
    InitializeAgentInput,
    MarkAgentFailedInput,
    RecordSubAgentResultInput,
    RegisterSubAgentsInput,
    SubAgentCompletionEvent,
    ToolCallResult,
)
from .errors import (
    NonDeterministicStepNameWarning,
    NonRetryableError,
    StepResultNotJSONError,
    StepResultTooLargeError,
    WorkflowTimeoutError,
)
from .executor import CloudflareAgentExecutor, WorkflowAgentHandle
from .local import LocalWorkflows, local_workflows
from .sessions import WorkflowSessions
from .state import D1StateStore
from .step import LocalWorkflowStep
from .streams import DurableObjectStreamManager, StreamServer
from .workflow import WorkflowRunner, create_workflow_runner, run_agent_workflow

__all__ = [
    "DEFAULT_STEP_CONFIG",
    "MAX_PAYLOAD_BYTES",
    "AgentSteps",
    "AgentWorkflowInput",
    "AgentWorkflowResult",
    "CloudflareAgentExecutor",
    "D1Error",
    "D1PreparedStatement",
    "D1StateStore",
    "DurableObjectStreamManager",
    "EndAgentStreamInput",
    "ExecuteAgentStepInput",
    "ExecuteToolCallInput",
    "FailAgentStreamInput",
    "InitializeAgentInput",
    "LocalD1",
    "LocalWorkflowBinding",
    "LocalWorkflowInstance",
    "LocalWorkflowStep",
    "LocalWorkflows",
    "MarkAgentFailedInput",
    "NonDeterministicStepNameWarning",
    "NonRetryableError",
    "RecordSubAgentResultInput",
    "RegisterSubAgentsInput",
    "StepResultNotJSONError",
    "StepResultTooLargeError",
    "StreamServer",
    "SubAgentCompletionEvent",
    "ToolCallResult",
    "WorkflowAgentHandle",
    "WorkflowDependencies",
    "WorkflowEvent",
    "WorkflowRetryConfig",
    "WorkflowRunner",
    "WorkflowSessions",
    "WorkflowStepConfig",
    "WorkflowTimeoutError",
    "create_workflow_runner",
    "local_workflows",
    "parse_duration",
    "run_agent_workflow",
]
