"""``ReplayLLM.from_session(path)``: the model turns of an exported session, offline.

A ``.helix`` file holds the session's messages as a tree (every branch, every fork) and
its usage per step. A request is answered with the model turn that followed exactly that
conversation in the recording, wherever it sits in the tree, so a fork from any
checkpoint replays with no network: its first request is a prefix the recording has seen.

A request the recording never saw raises :class:`~helix_lab.llm.cassette.CassetteMismatch`
naming the first differing field: a message that differs (``messages[4].content[0]
.content``, a tool that now answers differently), or the model, system prompt or tools
when they differ from those the manifest recorded.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeAlias

from ..difference import MISSING, first_difference
from .base import LLMEvent, LLMRequest
from .cassette import CassetteMismatch, request_json

__all__ = ["SessionReplay"]

HINT = ("the recording never saw this conversation; run it with a live model (e.g. %helix "
        "llm anthropic) to answer it")
_USAGE = (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
          ("cache_read_tokens", "cache_read_input_tokens"),
          ("cache_write_tokens", "cache_creation_input_tokens"))


_Key: TypeAlias = tuple[str, int]
"""A message: the prefix of its session in the file, and its row id there."""


def _canonical(message: Any) -> str:
    return json.dumps(message, sort_keys=True, ensure_ascii=False)


class SessionReplay:
    """Answers each request with the recorded turn that followed the same conversation."""

    def __init__(self, path: str | os.PathLike[str], *, delay: float = 0.0,
                 ignore: frozenset[str] | set[str] = frozenset()) -> None:
        from ..session_file import SessionFile

        file = SessionFile(path)
        self.path = Path(path)
        self.delay = delay
        self.ignore = frozenset(ignore)
        self.manifest = file.manifest
        self.requests: list[LLMRequest] = []
        # Messages of every session in the file (its sub-agents' too), as one forest keyed
        # by (session prefix, row id): a sub-agent's conversation starts a tree of its own.
        self._messages: dict[_Key, dict[str, Any]] = {}
        self._children: dict[_Key | None, list[_Key]] = {}
        self._usage: dict[_Key, dict[str, Any]] = {}
        self._agents = [part["agent"] for _, part in file.sessions if part.get("agent")]
        for prefix, _ in file.sessions:
            parents: dict[_Key, _Key | None] = {}
            for row in file.rows("helix_messages", prefix):
                key = (prefix, row["id"])
                parent = None if row["parent_id"] is None else (prefix, row["parent_id"])
                self._messages[key] = json.loads(row["message"])
                self._children.setdefault(parent, []).append(key)
                parents[key] = parent
            self._usage.update(self._usage_by_message(
                prefix, list(file.rows("helix_checkpoints", prefix)),
                list(file.rows("helix_usage", prefix)), parents))
        self._keys = {k: _canonical(m) for k, m in self._messages.items()}

    def __repr__(self) -> str:
        turns = sum(1 for m in self._messages.values() if m.get("role") == "assistant")
        return (f"ReplayLLM.from_session({str(self.path)!r}, turns={turns}, "
                f"replayed={len(self.requests)})")

    @staticmethod
    def _usage_by_message(prefix: str, checkpoints: list[dict[str, Any]],
                          usage: list[dict[str, Any]],
                          parents: dict[_Key, _Key | None]) -> dict[_Key, dict[str, Any]]:
        """Each model turn's usage row: a step's turn is the first message it appended."""
        by_step = {(u["run_id"], u["step"]): u for u in usage if u.get("kind") == "llm"}
        by_id = {c["id"]: c for c in checkpoints}
        found: dict[_Key, dict[str, Any]] = {}
        for checkpoint in checkpoints:
            parent = by_id.get(checkpoint["parent_id"])
            entry = by_step.get((checkpoint["run_id"], checkpoint["step"]))
            if parent is None or entry is None or checkpoint["step"] <= parent["step"]:
                continue
            stop = None if parent["message_head"] is None else (prefix,
                                                                parent["message_head"])
            cursor = None if checkpoint["message_head"] is None else (
                prefix, checkpoint["message_head"])
            first = None
            while cursor is not None and cursor != stop:
                cursor, first = parents.get(cursor), cursor
            if first is not None:
                found[first] = entry
        return found

    def _source(self) -> str:
        return f"the session recorded in {self.path}"

    def _check_agent(self, number: int, sent: dict[str, Any]) -> None:
        """The model, system prompt and tools of the request ``sent`` (as
        :func:`~helix_lab.llm.cassette.request_json` gives it), against those of an agent the
        manifest recorded (the session's, or a sub-agent's)."""
        first = None
        for agent in self._agents:
            recorded = {k: agent[k] for k in ("model", "system", "tools")
                        if k in agent and k not in self.ignore}
            found = first_difference(recorded, {k: sent.get(k) for k in recorded})
            if found is None:
                return
            first = first or found
        if first is not None:
            raise CassetteMismatch(self._source(), number, first.path, first.left, first.right,
                                   hint=HINT)

    def _turn(self, number: int, messages: list[Any]) -> _Key:
        """The recorded turn that answers the conversation ``messages`` (JSON round-tripped)."""
        node: _Key | None = None
        for index, message in enumerate(messages):
            kids = self._children.get(node, [])
            key = _canonical(message)
            match = next((k for k in kids if self._keys[k] == key), None)
            if match is None:
                recorded = self._messages[kids[-1]] if kids else MISSING
                found = first_difference(recorded, message)
                path = found.path if found else ""
                if path and not path.startswith("["):
                    path = "." + path
                raise CassetteMismatch(self._source(), number, f"messages[{index}]{path}",
                                       found.left if found else recorded,
                                       found.right if found else message, hint=HINT)
            node = match
        turns = [k for k in self._children.get(node, [])
                 if self._messages[k].get("role") == "assistant"]
        if not turns:
            following = self._children.get(node, [])
            raise CassetteMismatch(
                self._source(), number, f"messages[{len(messages)}]",
                self._messages[following[-1]] if following else MISSING, MISSING, hint=HINT,
                detail=(f"the recording made no model call after these {len(messages)} "
                        "messages" + (" (it went on with another message)" if following
                                      else " (it ended there)")))
        return turns[-1]  # several: the same conversation was asked again; take the last

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        number = len(self.requests) + 1
        sent = request_json(request)  # one JSON round trip of the request, messages and all
        self._check_agent(number, sent)
        turn = self._turn(number, sent["messages"])
        self.requests.append(request)
        events = self._events(turn)
        for index, event in enumerate(events):
            if self.delay and index:
                await asyncio.sleep(self.delay)
            yield event

    def _events(self, turn: _Key) -> list[Any]:
        """The stream events that rebuild the recorded message exactly."""
        events: list[Any] = []
        calls = False
        for block in self._messages[turn].get("content") or []:
            kind = block.get("type")
            if kind == "thinking":
                event: dict[str, Any] = {"type": "thinking_delta",
                                         "delta": block.get("thinking", "")}
                if block.get("signature"):
                    event["signature"] = block["signature"]
                events.append(event)
            elif kind == "text" and block.get("text"):
                events.append({"type": "text_delta", "delta": block["text"]})
            elif kind == "tool_use":
                calls = True
                events.append({"type": "tool_call", "id": block["id"], "name": block["name"],
                               "input": copy.deepcopy(block["input"])})
        usage = self._usage.get(turn)
        if usage is not None:
            events.append({"type": "usage", **{name: int(usage.get(column) or 0)
                                               for column, name in _USAGE}})
        events.append({"type": "finish", "stop_reason": "tool_use" if calls else "end_turn"})
        return events

