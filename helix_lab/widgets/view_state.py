"""What an agent view shows, computed from chunks alone (no widgets, no I/O).

``ViewState.apply(chunk)`` folds one chunk into a transcript, a step timeline, a status
and usage totals, and says which parts changed, so the widget redraws only those. The
transcript keeps every item (or, with ``max_items``, the newest ones: what a live view
needs), and :data:`RENDER_ITEMS` bounds what is drawn, so a long session never makes the
front end draw everything at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..runtime.chunks import ChunkType, SessionStatus

__all__ = ["ACTIONS", "Item", "StepMark", "ViewState", "allowed_actions"]

RENDER_ITEMS = 200
ACTIONS = ("interrupt", "resume", "retry", "abort")

_STATUS_BY_CHUNK: dict[ChunkType, SessionStatus] = {
    "run_started": "running",
    "run_resumed": "running",
    "run_completed": "completed",
    "run_failed": "failed",
    "run_interrupted": "interrupted",
    "approval_required": "paused",
}


def allowed_actions(status: SessionStatus | str) -> set[str]:
    """Which buttons make sense for a session in ``status``."""
    return {
        "running": {"interrupt", "abort"},
        "interrupted": {"resume", "retry", "abort"},
        # Paused: the approval panel decides; interrupt and abort still work.
        "paused": {"interrupt", "abort"},
        "completed": {"retry"},
        "failed": {"retry"},
    }.get(status, set())


@dataclass
class Item:
    """One entry of the transcript."""

    kind: str  # text | thinking | tool | error | info | retry | custom | approval
    step: int
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepMark:
    step: int
    status: str = "running"  # running | done | failed | interrupted
    started: int = 0
    ended: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    tools: int = 0
    durable: dict[str, tuple[str, int]] = field(default_factory=dict)
    """The Workflows approach: each durable step of this agent step, as (how, attempts);
    how is ``ran``, ``retried``, ``failed``, or ``memoized`` (answered from storage)."""
    cost_usd: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else max(self.ended - self.started, 0) / 1000


class ViewState:
    """The view of one session, built from its chunks in sequence order."""

    def __init__(self, agent_type: str, session_id: str, *,
                 max_items: int | None = None) -> None:
        self.agent_type = agent_type
        self.session_id = session_id
        self.max_items = max_items
        """Keep at most about this many items (the oldest go); ``None`` keeps every one."""
        self.dropped_items = 0
        self.status = "starting"
        self.run_id: str | None = None
        self.last_sequence = 0
        self.chunks = 0
        self.items: list[Item] = []
        self.steps: dict[int, StepMark] = {}
        self.output: Any = None
        self.error: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.checkpoint_ids: list[str] = []
        self.cost_usd: float | None = None
        """Dollars of the priced model calls seen; ``None`` while none had a price."""
        self.unpriced_calls = 0
        self.pending: dict[str, dict[str, Any]] = {}
        """Tool calls waiting for approval: id -> ``{toolName, input, step, checkpointId}``."""
        self._tools: dict[str, Item] = {}

    # -- folding chunks --------------------------------------------------------------------

    def _append_text(self, kind: str, step: int, delta: str) -> None:
        last = self.items[-1] if self.items else None
        if last is not None and last.kind == kind and last.step == step:
            last.text += delta
        else:
            self.items.append(Item(kind, step, delta))

    def _mark(self, step: int, timestamp: int) -> StepMark:
        mark = self.steps.get(step)
        if mark is None:
            mark = self.steps[step] = StepMark(step, started=timestamp)
        return mark

    def apply(self, chunk: dict[str, Any]) -> set[str]:
        """Fold one chunk in; returns the parts that changed."""
        sequence = chunk.get("sequence", 0)
        if chunk["type"] == "stream_resync":  # the server went back: follow it
            self.last_sequence = sequence
            self.items.append(Item("error", chunk.get("step", 0), f"stream resynced: "
                                   f"{chunk.get('reason', 'the server went back')}"))
            return {"stream"}
        if sequence and sequence <= self.last_sequence:
            return set()
        self.last_sequence = sequence or self.last_sequence
        self.chunks += 1
        kind = chunk["type"]
        changed = {"stream"}
        if kind in _STATUS_BY_CHUNK:
            self.status = _STATUS_BY_CHUNK[kind]
            self.run_id = chunk.get("runId", self.run_id)
            changed |= {"header", "buttons", "timeline"}
        handler = _HANDLERS.get(kind)
        if handler is not None:
            changed |= handler(self, chunk, chunk.get("step", 0), chunk.get("timestamp", 0))
        if self.max_items is not None and len(self.items) > self.max_items * 5 // 4:
            drop = len(self.items) - self.max_items  # in bulk: a list shift per 1/4 refill
            del self.items[:drop]
            self.dropped_items += drop
        return changed

    # One handler per chunk type: (view, chunk, step, timestamp) -> the parts it changed.

    def _on_text(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        self._append_text("text", step, chunk.get("delta", ""))
        return set()

    def _on_thinking(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        self._append_text("thinking", step, chunk.get("delta", ""))
        return set()

    def _on_step_started(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        self._mark(step, stamp).status = "running"
        return {"timeline"}

    def _on_tool_start(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        item = Item("tool", step, chunk.get("toolName", "?"),
                    {"input": chunk.get("input"), "id": chunk.get("toolCallId")})
        self._tools[str(chunk.get("toolCallId"))] = item
        self.items.append(item)
        self._mark(step, stamp).tools += 1
        return set()

    def _on_tool_end(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        item = self._tools.pop(str(chunk.get("toolCallId")), None)
        if item is not None:
            item.data["output" if "output" in chunk else "error"] = chunk.get(
                "output", chunk.get("error"))
        return set()

    def _on_usage(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        mark = self._mark(step, stamp)
        mark.input_tokens += chunk.get("inputTokens", 0)
        mark.output_tokens += chunk.get("outputTokens", 0)
        self.input_tokens += chunk.get("inputTokens", 0)
        self.output_tokens += chunk.get("outputTokens", 0)
        cost = chunk.get("costUsd")
        if isinstance(cost, int | float):
            mark.cost_usd = (mark.cost_usd or 0.0) + cost
            self.cost_usd = (self.cost_usd or 0.0) + cost
        else:
            self.unpriced_calls += 1
        return {"header", "timeline"}

    def _on_approval_required(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        call_id = str(chunk.get("toolCallId"))
        self.pending[call_id] = {"toolName": chunk.get("toolName", "?"),
                                 "input": chunk.get("input"), "step": step,
                                 "checkpointId": chunk.get("checkpointId")}
        self.items.append(Item("approval", step, f"{chunk.get('toolName')} waits for approval",
                               {"input": chunk.get("input"), "id": call_id}))
        self._end_running_steps("paused", stamp)
        return {"approvals"}

    def _on_approval_resolved(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        call = self.pending.pop(str(chunk.get("toolCallId")), None)
        name = call["toolName"] if call else chunk.get("toolCallId")
        verb = {"approve": "approved", "edit": "approved with edits", "deny": "denied"}.get(
            str(chunk.get("action")), str(chunk.get("action")))
        self.items.append(Item("info", step, f"{name} {verb}"))
        return {"approvals"}

    def _on_checkpoint(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        self.checkpoint_ids.append(chunk.get("checkpointId", ""))
        mark = self.steps.get(step)
        if chunk.get("status") == "paused":
            if mark is not None:
                mark.status, mark.ended = "paused", stamp
        elif mark is not None and mark.status in ("running", "paused"):
            mark.status, mark.ended = "done", stamp
        return {"checkpoints", "timeline"}

    def _on_llm_retry(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        self.items.append(Item("retry", step, f"model call failed ({chunk.get('error')}); "
                               f"retry {chunk.get('attempt')} of "
                               f"{chunk.get('maxAttempts')} in {chunk.get('delayMs')} ms"))
        return set()

    def _on_completed(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        self.output = chunk.get("output")
        return set()

    def _end_running_steps(self, status: str, stamp: int) -> None:
        for mark in self.steps.values():
            if mark.status == "running":
                mark.status, mark.ended = status, stamp

    def _on_failed(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        self.error = chunk.get("error")
        self.items.append(Item("error", step, str(self.error)))
        self._end_running_steps("failed", stamp)
        self.pending.clear()
        return {"approvals"}

    def _on_interrupted(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        self.items.append(Item("info", step, f"interrupted: {chunk.get('reason')}"))
        self._end_running_steps("interrupted", stamp)
        self.pending.clear()  # the calls wait again, with new chunks, if it is resumed
        return {"approvals"}

    def _on_resumed(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        mode = chunk.get("mode", "continue")
        source = chunk.get("fromCheckpointId") or ""
        self.items.append(Item("info", step, f"resumed ({mode}) from step {step}"
                               + (f", branch {chunk['branch']}" if "branch" in chunk else ""),
                               {"checkpoint": source}))
        return set()

    def _on_subagent(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        verb = "started" if chunk["type"] == "subagent_start" else "ended"
        self.items.append(Item("info", step, f"sub-agent {chunk.get('childAgentType', '')} "
                               f"{verb}: {chunk.get('childSessionId')}"))
        return set()

    def _on_workflow_step(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        mark = self._mark(step, stamp)
        mark.durable[str(chunk.get("name", ""))] = (str(chunk.get("status", "ran")),
                                                    int(chunk.get("attempts", 1)))
        if chunk.get("status") == "retried":
            self.items.append(Item("retry", step, f"step {chunk.get('name')!r} ran again: "
                                   f"attempt {chunk.get('attempts')}"))
        return {"timeline"}

    def _on_workflow_resumed(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        """A replay: every durable step seen so far was answered from storage this time."""
        for mark in self.steps.values():
            for name, (how, attempts) in mark.durable.items():
                if how in ("ran", "retried"):
                    mark.durable[name] = ("memoized", attempts)
        self.items.append(Item("info", step, f"resumed: {chunk.get('memoizedSteps')} steps "
                               "replayed from storage, none run again"))
        return {"timeline"}

    def _on_custom(self, chunk: dict[str, Any], step: int, stamp: int) -> set[str]:
        self.items.append(Item("custom", step, str(chunk.get("name", "custom")),
                               {"data": chunk.get("data")}))
        return set()

    # -- summaries -------------------------------------------------------------------------

    @property
    def step_count(self) -> int:
        return max((s for s, m in self.steps.items() if m.status == "done"), default=0)

    def visible_items(self) -> tuple[int, list[Item]]:
        """How many items are hidden, and the newest ones to draw."""
        first = max(len(self.items) - RENDER_ITEMS, 0)
        return self.dropped_items + first, self.items[first:]

    def last_output_text(self, limit: int = 60) -> str:
        if self.output is None:
            return ""
        text = self.output if isinstance(self.output, str) else repr(self.output)
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def cost_text(self) -> str:
        """Dollars so far: ``$0.0123``, ``unpriced``, or ``$0.0123 + unpriced``."""
        if self.cost_usd is None:
            return "unpriced" if self.unpriced_calls else "$0"
        text = f"${self.cost_usd:.4f}"
        return text + " + unpriced" if self.unpriced_calls else text

    def summary(self) -> str:
        """A short, stable, one-line summary (what nbval compares)."""
        parts = [f"agent={self.agent_type!r}", f"session={self.session_id!r}",
                 f"status={self.status!r}", f"steps={self.step_count}"]
        if self.pending:
            parts.append(f"waiting={sorted(p['toolName'] for p in self.pending.values())!r}")
        if self.output is not None:
            parts.append(f"output={self.last_output_text()!r}")
        if self.error:
            parts.append(f"error={self.error[:60]!r}")
        return f"AgentView({', '.join(parts)})"


_Handler = Callable[[ViewState, dict[str, Any], int, int], set[str]]
_HANDLERS: dict[str, _Handler] = {
    "text_delta": ViewState._on_text,
    "thinking": ViewState._on_thinking,
    "step_started": ViewState._on_step_started,
    "tool_start": ViewState._on_tool_start,
    "tool_end": ViewState._on_tool_end,
    "usage": ViewState._on_usage,
    "checkpoint": ViewState._on_checkpoint,
    "llm_retry": ViewState._on_llm_retry,
    "run_completed": ViewState._on_completed,
    "run_failed": ViewState._on_failed,
    "run_interrupted": ViewState._on_interrupted,
    "run_resumed": ViewState._on_resumed,
    "subagent_start": ViewState._on_subagent,
    "subagent_end": ViewState._on_subagent,
    "custom": ViewState._on_custom,
    "workflow_step": ViewState._on_workflow_step,
    "workflow_resumed": ViewState._on_workflow_resumed,
    "approval_required": ViewState._on_approval_required,
    "approval_resolved": ViewState._on_approval_resolved,
}
"""How each chunk type changes the view; a type with no handler changes only the stream
(``run_started``, ``state_patch``: the status table above covers what they say)."""
