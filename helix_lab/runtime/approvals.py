"""Tool calls that wait for a person: the pending turn of a paused run, and the decisions.

When the model asks for a tool declared ``@tool(requires_approval=...)``, the step stops
before any of its calls run. The model's turn is kept here, keyed by the ``paused``
checkpoint, so that a paused session needs no live task and survives a restart::

    helix_pending(checkpoint_id, step, message, calls, decisions, timing)

``POST /approve`` adds decisions (approve, edit with a new input, deny with a message);
once every waiting call has one, a run resumes the step from the kept turn: approved and
edited calls run with exactly the input that was approved, denied ones give the model an
error ``tool_result`` carrying the message, and the history records the approved input.
Decisions are checked in full before anything is written, so a refused request changes
nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequestError, ConflictError
from ..tools import Tool, ToolInputError
from .sql import SqlTables
from .wire import ApproveRequest

__all__ = ["DENIED_DEFAULT", "PendingStore", "PendingTurn", "check_decisions", "denial_text"]

DENIED_DEFAULT = "The user denied this tool call."

_SCHEMA = """CREATE TABLE IF NOT EXISTS helix_pending (
    checkpoint_id TEXT PRIMARY KEY, step INTEGER NOT NULL, message TEXT NOT NULL,
    calls TEXT NOT NULL, decisions TEXT NOT NULL DEFAULT '{}', timing TEXT NOT NULL DEFAULT '{}')"""


def denial_text(message: str | None) -> str:
    """What the model reads in the error tool_result of a denied call."""
    return f"Denied by the user: {message or DENIED_DEFAULT}"


@dataclass
class PendingTurn:
    """The model's turn of a paused step, with the decisions made so far."""

    checkpoint_id: str
    step: int
    message: dict[str, Any]
    """The assistant message as the model sent it."""
    calls: list[dict[str, Any]]
    """``{"id", "name", "input", "requiresApproval"}`` per tool call, in the model's order."""
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Tool call id -> ``{"action", "input"?, "message"?}``."""
    timing: dict[str, Any] = field(default_factory=dict)

    def waiting(self) -> list[dict[str, Any]]:
        """The calls that still need a decision."""
        return [c for c in self.calls if c["requiresApproval"] and c["id"] not in self.decisions]

    def approved_input(self, call: dict[str, Any]) -> dict[str, Any]:
        decision = self.decisions.get(call["id"])
        if decision is not None and decision["action"] == "edit":
            return decision["input"]
        return call["input"]

    def resolved_message(self) -> dict[str, Any]:
        """The assistant message as history records it: edited calls carry their new input."""
        message = copy.deepcopy(self.message)
        inputs = {c["id"]: self.approved_input(c) for c in self.calls}
        for block in message.get("content", []):
            if isinstance(block, dict) and block.get("type") == "tool_use" and block.get(
                    "id") in inputs:
                block["input"] = inputs[block["id"]]
        return message

    def to_wire(self) -> list[dict[str, Any]]:
        """``pendingApprovals`` as clients see them."""
        return [{"toolCallId": c["id"], "toolName": c["name"], "input": c["input"],
                 "step": self.step, "checkpointId": self.checkpoint_id} for c in self.waiting()]

    def approvals(self) -> list[dict[str, Any]]:
        """Every decided call, with what the model asked for and what was approved."""
        out = []
        for call in self.calls:
            decision = self.decisions.get(call["id"])
            if decision is None:
                continue
            entry = {"toolCallId": call["id"], "toolName": call["name"],
                     "action": decision["action"], "modelInput": call["input"]}
            if decision["action"] != "deny":
                entry["input"] = self.approved_input(call)
            else:
                entry["message"] = decision.get("message") or DENIED_DEFAULT
            out.append(entry)
        return out


class PendingStore(SqlTables):
    """``helix_pending`` on the object's SQL storage."""

    SCHEMA = (_SCHEMA,)

    def save(self, turn: PendingTurn) -> None:
        self.sql.exec(
            "INSERT OR REPLACE INTO helix_pending (checkpoint_id, step, message, calls, "
            "decisions, timing) VALUES (?, ?, ?, ?, ?, ?)",
            turn.checkpoint_id, turn.step, json.dumps(turn.message), json.dumps(turn.calls),
            json.dumps(turn.decisions), json.dumps(turn.timing))

    def get(self, checkpoint_id: str | None) -> PendingTurn | None:
        if not checkpoint_id:
            return None
        rows = self.sql.exec("SELECT * FROM helix_pending WHERE checkpoint_id = ?",
                             checkpoint_id)
        if not rows:
            return None
        row = rows[0]
        return PendingTurn(checkpoint_id=row["checkpoint_id"], step=row["step"],
                           message=json.loads(row["message"]), calls=json.loads(row["calls"]),
                           decisions=json.loads(row["decisions"]),
                           timing=json.loads(row["timing"]))

    def carry(self, turn: PendingTurn, checkpoint_id: str) -> PendingTurn:
        """The same pending turn under a new checkpoint (an interrupt or a fork of a pause)."""
        moved = PendingTurn(checkpoint_id, turn.step, turn.message, turn.calls,
                            dict(turn.decisions), dict(turn.timing))
        self.save(moved)
        return moved


def check_decisions(turn: PendingTurn, body: ApproveRequest,
                    find_tool: Callable[[str], Tool | None]) -> dict[str, dict[str, Any]]:
    """Validate every decision against the pending turn; returns them by tool call id.

    Raises :class:`ConflictError` for a call that is not waiting (409) and
    :class:`BadRequestError` for an edit that does not fit the tool's schema (400, naming
    ``decisions[i].input.FIELD``) or a decision that is incomplete. Writes nothing.
    """
    waiting = {c["id"]: c for c in turn.waiting()}
    decided: dict[str, dict[str, Any]] = {}
    for i, decision in enumerate(body.decisions):
        where = f"decisions[{i}]"
        call = waiting.get(decision.tool_call_id)
        if call is None:
            known = ", ".join(waiting) or "none"
            state = ("was already decided" if decision.tool_call_id in turn.decisions
                     else "is not waiting for approval")
            raise ConflictError(
                f"Tool call {decision.tool_call_id!r} {state}. Waiting: {known}; "
                "GET /status lists pendingApprovals.", code="unknown_tool_call",
                details={"field": f"{where}.toolCallId", "pending": list(waiting)})
        if decision.tool_call_id in decided:
            raise BadRequestError(f"{where}: tool call {decision.tool_call_id!r} is decided "
                                  "twice in this request; send one decision per call.",
                                  field=f"{where}.toolCallId")
        entry: dict[str, Any] = {"action": decision.action}
        if decision.action == "edit":
            if decision.input is None:
                raise BadRequestError(f"{where}.input is required for action 'edit': the "
                                      "arguments the tool should run with.",
                                      field=f"{where}.input")
            entry["input"] = _validated(find_tool(call["name"]), call, decision.input, where)
        elif decision.input is not None:
            raise BadRequestError(f"{where}.input is only for action 'edit'; use 'edit' to "
                                  "change the arguments.",
                                  field=f"{where}.input")
        if decision.action == "deny":
            entry["message"] = decision.message or DENIED_DEFAULT
        elif decision.message is not None:
            raise BadRequestError(f"{where}.message is only for action 'deny'.",
                                  field=f"{where}.message")
        decided[decision.tool_call_id] = entry
    return decided


def _validated(tool: Tool | None, call: dict[str, Any], data: dict[str, Any],
               where: str) -> dict[str, Any]:
    if tool is None:  # a sub-agent or an unknown tool: nothing to check the input against
        return data
    try:
        return tool.validate_input(data)
    except ToolInputError as exc:
        name = f"{where}.input" + (f".{exc.field}" if exc.field else "")
        raise BadRequestError(f"{exc} (at {name}); fix it and approve again.",
                              field=name) from None
