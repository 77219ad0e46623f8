"""The stream's vocabulary: every chunk type, every session status, and their shapes.

This module is the one place that names them. The executor and the server write chunks of
these shapes, clients stop following a run at a :data:`TERMINAL` chunk, and the widgets
dispatch on :data:`ChunkType`. A new chunk type is added here first: to :data:`ChunkType`,
with its ``TypedDict``, in :data:`CHUNK_SHAPES`.

Every chunk on the wire carries the stamp of :class:`ChunkStamp` (added by the stream
manager when it numbers the chunk) plus the fields of its own type, in camelCase::

    {"type": "tool_start", "sequence": 7, "agentId": "s1", "agentType": "researcher",
     "step": 2, "timestamp": 1764633600000, "runId": "run_...",
     "toolCallId": "toolu_1", "toolName": "search", "input": {"query": "otters"}}
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypeAlias, TypedDict, get_args

__all__ = [
    "CHUNK_SHAPES",
    "CHUNK_TYPES",
    "RESUMABLE",
    "SESSION_STATUSES",
    "TERMINAL",
    "ApprovalRequiredChunk",
    "ApprovalResolvedChunk",
    "CheckpointChunk",
    "ChunkStamp",
    "ChunkType",
    "CustomChunk",
    "LLMRetryChunk",
    "RunCompletedChunk",
    "RunFailedChunk",
    "RunInterruptedChunk",
    "RunResumedChunk",
    "RunStartedChunk",
    "SessionStatus",
    "StatePatchChunk",
    "StepStartedChunk",
    "StreamResyncChunk",
    "SubagentEndChunk",
    "SubagentStartChunk",
    "TextDeltaChunk",
    "ThinkingChunk",
    "ToolEndChunk",
    "ToolStartChunk",
    "UsageChunk",
    "WorkflowResumedChunk",
    "WorkflowStepChunk",
    "usage_fields",
]

ChunkType: TypeAlias = Literal[
    "run_started",
    "run_resumed",
    "step_started",
    "text_delta",
    "thinking",
    "tool_start",
    "tool_end",
    "state_patch",
    "checkpoint",
    "llm_retry",
    "subagent_start",
    "subagent_end",
    "usage",
    "custom",
    "approval_required",
    "approval_resolved",
    "run_interrupted",
    "run_completed",
    "run_failed",
    "stream_resync",
    "workflow_step",
    "workflow_resumed",
]
CHUNK_TYPES: frozenset[str] = frozenset(get_args(ChunkType))

SessionStatus: TypeAlias = Literal["idle", "running", "paused", "interrupted", "completed",
                                   "failed"]
"""``idle`` before the first run; ``paused`` waits for a human (an approval); ``interrupted``
was stopped softly, or found without a host; ``failed`` includes an abort."""
SESSION_STATUSES: frozenset[str] = frozenset(get_args(SessionStatus))

TERMINAL: frozenset[str] = frozenset({"run_completed", "run_failed", "run_interrupted",
                                      "approval_required"})
"""Chunk types after which a run may write nothing more: a client stops following there
once the chunk is also the session's last (a paused run ends with one ``approval_required``
per waiting call)."""

RESUMABLE: frozenset[str] = frozenset({"interrupted"})
"""Session statuses that ``/resume`` (mode ``continue``) accepts. A ``paused`` session goes
on through ``/approve`` instead (its ``canResume`` is true too), so that no waiting tool
call can run without a decision."""


class ChunkStamp(TypedDict):
    """What the stream manager adds to every chunk when it stores it."""

    type: ChunkType
    sequence: int
    agentId: str
    agentType: str
    step: int
    timestamp: int
    runId: NotRequired[str]


class RunStartedChunk(TypedDict):
    type: Literal["run_started"]
    agentType: str
    message: str


class RunResumedChunk(TypedDict):
    type: Literal["run_resumed"]
    mode: str
    """``continue``, ``branch``, ``approval``, ``retry_from_checkpoint`` or
    ``retry_from_start``."""
    fromCheckpointId: str | None
    branch: NotRequired[int]
    editedToolResults: NotRequired[list[str]]
    """Tool call ids whose results this branch replaced (``editToolResults``)."""


class StepStartedChunk(TypedDict):
    type: Literal["step_started"]


class TextDeltaChunk(TypedDict):
    type: Literal["text_delta"]
    delta: str


class ThinkingChunk(TypedDict):
    type: Literal["thinking"]
    delta: str


class ToolStartChunk(TypedDict):
    type: Literal["tool_start"]
    toolCallId: str
    toolName: str
    input: dict[str, Any]


class ToolEndChunk(TypedDict):
    type: Literal["tool_end"]
    toolCallId: str
    toolName: str
    output: NotRequired[Any]
    error: NotRequired[str]
    denied: NotRequired[bool]
    """The call was denied: it never ran, and ``error`` carries the denial."""


class StatePatchChunk(TypedDict):
    type: Literal["state_patch"]
    patch: list[dict[str, Any]]


class CheckpointChunk(TypedDict):
    type: Literal["checkpoint"]
    checkpointId: str
    step: int
    branch: int
    status: NotRequired[Literal["paused"]]
    """Present on the checkpoint of a step that waits for approval."""


class LLMRetryChunk(TypedDict):
    type: Literal["llm_retry"]
    attempt: int
    maxAttempts: int
    delayMs: int
    status: int | None
    error: str


class SubagentStartChunk(TypedDict):
    type: Literal["subagent_start"]
    toolCallId: str
    childSessionId: str
    childAgentType: str


class SubagentEndChunk(TypedDict):
    type: Literal["subagent_end"]
    toolCallId: str
    childSessionId: str
    childAgentType: str
    status: NotRequired[str | None]
    output: NotRequired[Any]
    error: NotRequired[str]


class UsageChunk(TypedDict, total=False):
    """Token counts of one model call, named as ``/usage`` names them (:func:`usage_fields`)."""

    type: Literal["usage"]
    model: str
    inputTokens: int
    outputTokens: int
    cacheReadTokens: int
    cacheWriteTokens: int
    costUsd: float | None
    """The call's price in US dollars; ``None`` when the model has no known price."""


def usage_fields(usage: dict[str, int]) -> dict[str, int]:
    """An adapter's token counts (its ``usage`` event, in Anthropic's names) as the wire
    names them, in ``usage`` chunks and ``/usage`` entries alike."""
    return {"inputTokens": usage.get("input_tokens", 0),
            "outputTokens": usage.get("output_tokens", 0),
            "cacheReadTokens": usage.get("cache_read_input_tokens", 0),
            "cacheWriteTokens": usage.get("cache_creation_input_tokens", 0)}


class CustomChunk(TypedDict):
    """What a tool sends with ``ctx.emit``; ``name`` and ``data`` are the tool's own."""

    type: Literal["custom"]
    name: NotRequired[str]
    data: NotRequired[Any]


class ApprovalRequiredChunk(TypedDict):
    type: Literal["approval_required"]
    toolCallId: str
    toolName: str
    input: dict[str, Any]
    checkpointId: str
    """The ``paused`` checkpoint that keeps the waiting turn."""


class ApprovalResolvedChunk(TypedDict):
    type: Literal["approval_resolved"]
    toolCallId: str
    action: Literal["approve", "edit", "deny"]


class RunInterruptedChunk(TypedDict):
    type: Literal["run_interrupted"]
    reason: str
    checkpointId: str | None
    budgetUsd: NotRequired[float]
    """With reason ``budget_exceeded``: the budget, and what the session had spent."""
    spentUsd: NotRequired[float]


class RunCompletedChunk(TypedDict):
    type: Literal["run_completed"]
    output: Any
    checkpointId: str


class RunFailedChunk(TypedDict):
    type: Literal["run_failed"]
    error: str
    aborted: bool


class StreamResyncChunk(TypedDict):
    """Made by a client, never stored: the server's stream went back (a restore)."""

    type: Literal["stream_resync"]
    reason: str


class WorkflowStepChunk(TypedDict):
    """The Workflows approach: a durable step ended. ``ran`` first time, ``retried`` after
    failed attempts (or a host that died mid-step), ``failed`` when it gave up."""

    type: Literal["workflow_step"]
    name: str
    status: Literal["ran", "retried", "failed"]
    attempts: int
    error: NotRequired[str]


class WorkflowResumedChunk(TypedDict):
    """The Workflows approach: a replay (after a crash, a pause, a restart) reached its first
    step to run; the ``memoizedSteps`` before it were answered from storage."""

    type: Literal["workflow_resumed"]
    memoizedSteps: int
    firstStep: str


CHUNK_SHAPES: dict[str, type] = {
    "run_started": RunStartedChunk,
    "run_resumed": RunResumedChunk,
    "step_started": StepStartedChunk,
    "text_delta": TextDeltaChunk,
    "thinking": ThinkingChunk,
    "tool_start": ToolStartChunk,
    "tool_end": ToolEndChunk,
    "state_patch": StatePatchChunk,
    "checkpoint": CheckpointChunk,
    "llm_retry": LLMRetryChunk,
    "subagent_start": SubagentStartChunk,
    "subagent_end": SubagentEndChunk,
    "usage": UsageChunk,
    "custom": CustomChunk,
    "approval_required": ApprovalRequiredChunk,
    "approval_resolved": ApprovalResolvedChunk,
    "run_interrupted": RunInterruptedChunk,
    "run_completed": RunCompletedChunk,
    "run_failed": RunFailedChunk,
    "stream_resync": StreamResyncChunk,
    "workflow_step": WorkflowStepChunk,
    "workflow_resumed": WorkflowResumedChunk,
}
"""Each chunk type's ``TypedDict``; a test keeps it in step with :data:`ChunkType`."""
