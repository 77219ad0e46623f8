"""``diff_runs``: where two branches or two sessions part, and how far apart they end up.

::

    diff = await diff_runs(handle, fork)                  # two sessions, or two branches
    diff = await diff_runs(handle, "cpv1-otters-s2-...")  # the head against a checkpoint
    print(diff)          # first divergent step and why, messages side by side, state,
                         # output, tokens, cost and latency
    diff.divergence      # Divergence(step=2, reason='state edit', detail='notes[1]: ...')

It is built on the client API alone (``/status``, ``/checkpoints``, ``/messages``,
``/usage``), so it works the same on every backend. A side is a session's head, a
checkpoint, or the head of one branch (``"SESSION@2"``); each side is read as the chain of
checkpoints from its root to that point, and the two chains are compared step by step.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from ..difference import Difference, first_difference, preview
from ..errors import UserError
from .handle import AgentHandle

if TYPE_CHECKING:
    from .backend import Backend

__all__ = ["Divergence", "RunDiff", "RunSide", "diff_runs", "session_of_checkpoint"]

_CHECKPOINT = re.compile(r"^cpv1-(?P<session>.+)-s\d+-t\d+-[0-9a-f]{6}$")
_BRANCH = re.compile(r"^(?P<session>.+)@(?P<branch>\d+)$")

# The reasons a step can differ, in the order they are checked.
START = "different start"
STATE_EDIT = "state edit"
INPUT = "different input message"
RESPONSE = "different model response"
TOOL_RESULT = "different tool result"
STATE_CHANGE = "different state change"
LENGTH = "one run has more steps"


def session_of_checkpoint(checkpoint_id: str) -> str | None:
    """The session id inside ``cpv1-{sessionId}-s{step}-t{ms}-{6hex}``, if it is one."""
    found = _CHECKPOINT.match(checkpoint_id)
    return found.group("session") if found else None


@dataclass
class _Ref:
    backend: Backend
    session_id: str
    checkpoint_id: str | None = None
    branch: int | None = None
    agent_type: str | None = None


def _ref(value: Any, backend: Backend | None) -> _Ref:
    """An :class:`AgentHandle`, ``(handle, checkpoint_id)``, or a string naming a session,
    a checkpoint (``cpv1-...``) or a branch head (``SESSION@N``) on ``backend``."""
    if isinstance(value, AgentHandle):
        return _Ref(value.backend, value.session_id, agent_type=value.agent_type)
    if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], AgentHandle)
            and isinstance(value[1], str)):
        handle, checkpoint = value
        return _Ref(handle.backend, handle.session_id, checkpoint, agent_type=handle.agent_type)
    if isinstance(value, str) and value:
        if backend is None:
            raise UserError(f"diff_runs cannot tell which backend {value!r} is on: pass an "
                            "AgentHandle as the other side, or backend=...")
        session = session_of_checkpoint(value)
        if session is not None:
            return _Ref(backend, session, value)
        branch = _BRANCH.match(value)
        if branch is not None:
            return _Ref(backend, branch.group("session"), branch=int(branch.group("branch")))
        return _Ref(backend, value)
    raise UserError(f"diff_runs compares AgentHandles, (handle, checkpoint_id) pairs, session "
                    f"ids, checkpoint ids or 'SESSION@BRANCH'; got {value!r:.80}.")


@dataclass
class _Step:
    """One step of a chain: the checkpoint that committed it and the one before it."""

    number: int
    checkpoint: dict[str, Any]
    before: dict[str, Any]
    messages: list[dict[str, Any]]
    """The step's own messages: the model's response, then its tool results."""
    usage: dict[str, float] = field(default_factory=dict)
    input_from: int = 0
    """Where the messages added since the previous step (a resume's message) begin."""

    @property
    def duration_ms(self) -> int:
        return int(self.checkpoint["timestamp"]) - int(self.before["timestamp"])


@dataclass
class RunSide:
    """One side of a diff, as read from its backend."""

    label: str
    session_id: str
    agent_type: str
    status: str
    checkpoint_id: str
    path: list[dict[str, Any]]
    """The checkpoints from the root to ``checkpoint_id``."""
    messages: list[dict[str, Any]]
    steps: list[_Step]
    output: Any
    state: Any
    handle: AgentHandle = field(repr=False)
    _states: dict[str, Any] = field(default_factory=dict, repr=False)

    async def state_at(self, checkpoint_id: str) -> Any:
        if checkpoint_id not in self._states:
            self._states[checkpoint_id] = (await self.handle.checkpoint(checkpoint_id))["state"]
        return self._states[checkpoint_id]

    def totals(self, from_step: int = 0) -> dict[str, float | None]:
        """Tokens, cost and step latency of the steps numbered ``from_step`` and later.

        The cost is ``None`` (unpriced) when any of those steps called a model with no
        known price: a partial sum would read as a price."""
        keys = ("inputTokens", "outputTokens", "costUsd", "latencyMs")
        total: dict[str, float | None] = dict.fromkeys(keys, 0.0)
        unpriced = False
        for step in self.steps:
            if step.number >= from_step:
                for key in keys[:3]:
                    total[key] = (total[key] or 0) + step.usage.get(key, 0)
                total["latencyMs"] = (total["latencyMs"] or 0) + step.duration_ms
                unpriced = unpriced or bool(step.usage.get("unpricedCalls"))
        if unpriced:
            total["costUsd"] = None
        return total


async def _load(ref: _Ref) -> RunSide:
    handle = ref.backend.handle(ref.session_id, ref.agent_type)
    status = await handle.status()
    if status.get("sessionId") is None:
        raise UserError(f"There is no session {ref.session_id!r} on {ref.backend.describe()}.")
    checkpoints = await handle.checkpoints()
    by_id = {c["checkpointId"]: c for c in checkpoints}
    target = ref.checkpoint_id or status.get("checkpointId")
    if ref.branch is not None:
        heads = [c for c in checkpoints if c.get("branch") == ref.branch]
        if not heads:
            branches = sorted({c.get("branch", 0) for c in checkpoints})
            raise UserError(f"Session {ref.session_id!r} has no branch {ref.branch}; its "
                            f"branches are {', '.join(map(str, branches))}.")
        target = heads[-1]["checkpointId"]
    if target not in by_id:
        raise UserError(f"Session {ref.session_id!r} has no checkpoint {target!r}; "
                        f"%helix checkpoints {ref.session_id} lists them.")
    path: list[dict[str, Any]] = []
    cursor: str | None = target
    while cursor is not None:
        path.append(by_id[cursor])
        cursor = by_id[cursor].get("parentId")
    path.reverse()
    messages = await handle.messages(target)
    usage = await handle.usage()
    by_step: dict[tuple[Any, Any], dict[str, float]] = {}
    for entry in usage.get("entries", []):
        totals = by_step.setdefault((entry.get("runId"), entry.get("step")), {})
        for key in ("inputTokens", "outputTokens"):
            totals[key] = totals.get(key, 0) + (entry.get(key) or 0)
        cost = entry.get("costUsd")
        totals["costUsd"] = totals.get("costUsd", 0) + (cost or 0)
        if cost is None:
            totals["unpricedCalls"] = totals.get("unpricedCalls", 0) + 1
    steps = []
    previous = path[0]["messageCount"]
    for before, checkpoint in pairwise(path):
        if checkpoint["step"] <= before["step"]:
            continue  # a run's start or an interrupt: no model call happened here
        steps.append(_Step(checkpoint["step"], checkpoint, before,
                           messages[before["messageCount"]:checkpoint["messageCount"]],
                           dict(by_step.get((checkpoint["runId"], checkpoint["step"]), {})),
                           previous))
        previous = checkpoint["messageCount"]
    head = await handle.checkpoint(target)
    where = "head" if target == status.get("checkpointId") else f"step {by_id[target]['step']}"
    side = RunSide(label=f"{ref.session_id} @ {where} (branch {by_id[target].get('branch', 0)})",
                   session_id=ref.session_id, agent_type=status.get("agentType") or "?",
                   status=by_id[target]["status"], checkpoint_id=target, path=path,
                   messages=messages, steps=steps, output=head.get("output"),
                   state=head.get("state"), handle=handle)
    side._states[target] = head.get("state")
    return side


@dataclass(frozen=True)
class Divergence:
    """The first step where two runs differ, and why."""

    step: int
    reason: str
    """One of: different start, state edit, different input message, different model
    response, different tool result, different state change, one run has more steps."""
    detail: str
    """The first differing field and its two values."""


def _detail(difference: Difference | None, prefix: str) -> str:
    """``difference`` described with its path under ``prefix`` (``state.notes[1]``)."""
    if difference is None:
        return ""
    path = difference.path
    if path and not path.startswith("["):
        path = "." + path
    return Difference(prefix + path, difference.left, difference.right).describe(
        "left", "right")


def _same_checkpoint(left: RunSide, right: RunSide, a: dict[str, Any],
                     b: dict[str, Any]) -> bool:
    """The very same stored checkpoint (two branches of one session share their past)."""
    return left.session_id == right.session_id and a["checkpointId"] == b["checkpointId"]


async def _compare_step(left: RunSide, right: RunSide, a: _Step,
                        b: _Step) -> Divergence | None:
    if _same_checkpoint(left, right, a.checkpoint, b.checkpoint):
        return None
    if not _same_checkpoint(left, right, a.before, b.before):
        found = first_difference(await left.state_at(a.before["checkpointId"]),
                                 await right.state_at(b.before["checkpointId"]))
        if found is not None:
            return Divergence(a.number, STATE_EDIT, _detail(found, "state"))
        # The steps before matched, so only the messages added since can differ; the full
        # prefixes are compared (for the index) only when they do.
        if (left.messages[a.input_from:a.before["messageCount"]]
                != right.messages[b.input_from:b.before["messageCount"]]):
            found = first_difference(left.messages[:a.before["messageCount"]],
                                     right.messages[:b.before["messageCount"]])
            if found is not None:
                return Divergence(a.number, INPUT, _detail(found, "messages"))
    found = first_difference(a.messages[:1], b.messages[:1])
    if found is not None:
        return Divergence(a.number, RESPONSE, _detail(found, "response"))
    found = first_difference(a.messages[1:], b.messages[1:])
    if found is not None:
        return Divergence(a.number, TOOL_RESULT, _detail(found, "toolResults"))
    found = first_difference(await left.state_at(a.checkpoint["checkpointId"]),
                             await right.state_at(b.checkpoint["checkpointId"]))
    if found is not None:
        return Divergence(a.number, STATE_CHANGE, _detail(found, "state"))
    return None


async def _divergence(left: RunSide, right: RunSide) -> Divergence | None:
    root_a, root_b = left.path[0], right.path[0]
    if not _same_checkpoint(left, right, root_a, root_b):
        found = first_difference(left.messages[:root_a["messageCount"]],
                                 right.messages[:root_b["messageCount"]])
        if found is None:
            found = first_difference(await left.state_at(root_a["checkpointId"]),
                                     await right.state_at(root_b["checkpointId"]))
            if found is not None:
                return Divergence(0, START, _detail(found, "state"))
        else:
            return Divergence(0, START, _detail(found, "messages"))
    for a, b in zip(left.steps, right.steps, strict=False):
        found = await _compare_step(left, right, a, b)
        if found is not None:
            return found
    if len(left.steps) != len(right.steps):
        longer, shorter = ((left, right) if len(left.steps) > len(right.steps)
                           else (right, left))
        number = len(shorter.steps) + 1
        return Divergence(number, LENGTH,
                          f"{shorter.session_id} stopped after step {len(shorter.steps)} "
                          f"({shorter.status}); {longer.session_id} went on to step "
                          f"{len(longer.steps)} ({longer.status})")
    return None


def _summary(step: _Step | None) -> str:
    """A step in a few words: the model's text and calls, then what the tools returned."""
    if step is None:
        return "—"
    parts: list[str] = []
    for message in step.messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
            continue
        for block in content or []:
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                parts.append(block["text"])
            elif kind == "tool_use":
                args = json.dumps(block.get("input"), ensure_ascii=False)
                parts.append(f"{block.get('name')}({args})")
            elif kind == "tool_result":
                result = block.get("content")
                text = result if isinstance(result, str) else json.dumps(result)
                parts.append(("error: " if block.get("is_error") else "→ ") + text)
    return " · ".join(parts) or "(empty)"


@dataclass
class RunDiff:
    """What :func:`diff_runs` found. ``str(diff)`` is the readable report."""

    left: RunSide
    right: RunSide
    divergence: Divergence | None
    state_difference: Difference | None
    state_patch: list[dict[str, Any]]
    """The JSON patch that turns the left's final state into the right's."""
    same_agent: bool
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return (self.divergence is None and self.state_difference is None
                and self.left.output == self.right.output)

    def side_by_side(self) -> list[tuple[int, str, str]]:
        """``(step, left, right)`` from the divergent step on."""
        start = self.divergence.step if self.divergence else len(self.left.steps) + 1
        left = {s.number: s for s in self.left.steps}
        right = {s.number: s for s in self.right.steps}
        numbers = sorted(n for n in {*left, *right} if n >= start)
        return [(n, _summary(left.get(n)), _summary(right.get(n))) for n in numbers]

    def totals(self) -> dict[str, tuple[float | None, float | None]]:
        """Whole-run tokens, cost and latency, ``(left, right)``."""
        a, b = self.left.totals(), self.right.totals()
        return {key: (a[key], b[key]) for key in a}

    def to_dict(self) -> dict[str, Any]:
        return {
            "left": {"label": self.left.label, "agentType": self.left.agent_type,
                     "status": self.left.status, "checkpointId": self.left.checkpoint_id},
            "right": {"label": self.right.label, "agentType": self.right.agent_type,
                      "status": self.right.status, "checkpointId": self.right.checkpoint_id},
            "sameAgent": self.same_agent,
            "notes": list(self.notes),
            "divergence": (None if self.divergence is None else {
                "step": self.divergence.step, "reason": self.divergence.reason,
                "detail": self.divergence.detail}),
            "steps": [{"step": n, "left": a, "right": b} for n, a, b in self.side_by_side()],
            "statePatch": self.state_patch,
            "output": {"left": self.left.output, "right": self.right.output,
                       "equal": self.left.output == self.right.output},
            "totals": {k: {"left": a, "right": b} for k, (a, b) in self.totals().items()},
        }

    def __str__(self) -> str:
        width = 44
        lines = [f"left:  {self.left.label} · {self.left.agent_type} · {self.left.status} · "
                 f"{len(self.left.steps)} steps",
                 f"right: {self.right.label} · {self.right.agent_type} · {self.right.status} · "
                 f"{len(self.right.steps)} steps"]
        lines += [f"note: {note}" for note in self.notes]
        if self.divergence is None:
            lines.append("no divergence: every step is the same")
        else:
            d = self.divergence
            lines.append(f"diverge at step {d.step}: {d.reason}"
                         + (f" — {d.detail}" if d.detail else ""))
            lines.append("")
            lines.append(f"{'step':>4}  {'left':<{width}}  right")
            for number, a, b in self.side_by_side():
                lines.append(f"{number:>4}  {preview_text(a, width):<{width}}  "
                             f"{preview_text(b, width)}")
        lines.append("")
        if self.state_difference is None:
            lines.append("state: the same")
        else:
            lines.append(f"state: {len(self.state_patch)} change(s), first at "
                         f"{_detail(self.state_difference, 'state')}")
            for op in self.state_patch[:8]:
                value = f" {preview(op['value'], 50)}" if "value" in op else ""
                lines.append(f"  {op['op']} {op['path']}{value}")
            if len(self.state_patch) > 8:
                lines.append(f"  … {len(self.state_patch) - 8} more")
        if self.left.output == self.right.output:
            lines.append(f"output: the same ({preview(self.left.output, 60)})")
        else:
            lines.append(f"output: left {preview(self.left.output, 60)}")
            lines.append(f"        right {preview(self.right.output, 60)}")
        lines.append("")
        lines.append(f"{'':<14}{'left':>12}{'right':>12}{'diff':>12}")
        for key, (a, b) in self.totals().items():
            fmt = "{:.6f}" if key == "costUsd" else "{:.0f}"

            def cell(value: float | None, fmt: str = fmt) -> str:
                return "unpriced" if value is None else fmt.format(value)

            change = "—" if a is None or b is None else fmt.format(b - a)
            lines.append(f"{key:<14}{cell(a):>12}{cell(b):>12}{change:>12}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        where = (f"step {self.divergence.step}: {self.divergence.reason}"
                 if self.divergence else "no divergence")
        return f"<RunDiff {self.left.session_id} vs {self.right.session_id}: {where}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def preview_text(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


async def diff_runs(handle_or_checkpoint: Any, other: Any, *,
                    backend: Backend | None = None) -> RunDiff:
    """Compare two runs: two sessions, two branches of one, or a head and a checkpoint.

    Each side is an :class:`AgentHandle` (its session's head), a ``(handle,
    checkpoint_id)`` pair, or a string: a session id, a checkpoint id, or ``"SESSION@N"``
    for the head of branch N. Strings are looked up on the backend of the other side's
    handle, or on ``backend``.
    """
    from ..runtime.jsonpatch import make_patch

    default = backend
    for value in (handle_or_checkpoint, other):
        if default is None and isinstance(value, AgentHandle):
            default = value.backend
        elif default is None and isinstance(value, tuple) and value and isinstance(
                value[0], AgentHandle):
            default = value[0].backend
    left = await _load(_ref(handle_or_checkpoint, default))
    right = await _load(_ref(other, default))
    notes = []
    same_agent = left.agent_type == right.agent_type
    if not same_agent:
        notes.append(f"the two runs use different agents ({left.agent_type} and "
                     f"{right.agent_type}); they are compared message by message anyway")
    if left.session_id == right.session_id and left.checkpoint_id == right.checkpoint_id:
        notes.append("both sides are the same checkpoint")
    divergence = await _divergence(left, right)
    state_difference = first_difference(left.state, right.state)
    patch = make_patch(left.state, right.state) if state_difference is not None else []
    return RunDiff(left, right, divergence, state_difference, patch, same_agent, notes)
