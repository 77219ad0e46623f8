"""The Workflows approach: step-level durability, as Cloudflare Workflows gives it.

Each agent step and each tool call is a memoized ``step.do``: after a crash the instance
continues by itself, and a step that had finished returns its stored result instead of
running again, so no model call is paid twice and no tool runs twice. See CONTRACT §9.

In the kernel, Cloudflare's bindings are emulated: :class:`LocalWorkflowBinding` (the
Workflows binding, instances in SQLite) and :class:`LocalD1` (D1 over sqlite3).
"""

from __future__ import annotations

from .binding import LocalWorkflowBinding, LocalWorkflowInstance, WorkflowEvent
from .config import (
    DEFAULT_STEP_CONFIG,
    MAX_PAYLOAD_BYTES,
    WorkflowRetryConfig,
    WorkflowStepConfig,
    parse_duration,
)
from .d1 import D1Error, D1PreparedStatement, LocalD1
from .errors import (
    NonDeterministicStepNameWarning,
    NonRetryableError,
    StepResultNotJSONError,
    StepResultTooLargeError,
    WorkflowTimeoutError,
)
from .step import LocalWorkflowStep

__all__ = [
    "DEFAULT_STEP_CONFIG",
    "MAX_PAYLOAD_BYTES",
    "D1Error",
    "D1PreparedStatement",
    "LocalD1",
    "LocalWorkflowBinding",
    "LocalWorkflowInstance",
    "LocalWorkflowStep",
    "NonDeterministicStepNameWarning",
    "NonRetryableError",
    "StepResultNotJSONError",
    "StepResultTooLargeError",
    "WorkflowEvent",
    "WorkflowRetryConfig",
    "WorkflowStepConfig",
    "WorkflowTimeoutError",
    "parse_duration",
]
