"""``ScriptedLLM``: a deterministic model whose turns you write in Python.

::

    llm = ScriptedLLM([
        Turn(thinking="Look it up first.", tool_calls=[call("search", query="otters")]),
        Turn(text="Otters hold hands while they sleep."),
    ])

A turn may also be a plain string (a text answer) or a function of the request that
returns a turn, for models that react to what they are sent. Delays make streaming
visible; an ``error`` makes the call fail, after any text of the turn has streamed, as a
real connection that drops mid-stream would.

The last ``keep_requests`` requests (100 by default; ``None`` keeps all) are kept in
``requests``, newest last, and ``calls`` counts every call. Each request holds that step's
whole message list, so keeping all of them pins memory that grows with the square of the
steps of a long run.

A turn without ``usage`` reports an estimate: a quarter token per character of the
request's JSON. Each message is measured once, the first time it is sent, so a long run
pays only for what is new in each request.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .base import LLMError, LLMEvent, LLMRequest

__all__ = ["ScriptedLLM", "Turn", "call", "split_words"]


def call(name: str, /, **input: Any) -> dict[str, Any]:
    """A scripted tool call: ``call("search", query="otters")``."""
    return {"name": name, "input": input}


@dataclass
class Turn:
    """One scripted model response."""

    text: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    """Seconds to wait before the first event."""
    chunk_delay: float | None = None
    """Seconds between deltas; ``None`` uses the model's default."""
    error: LLMError | None = None
    usage: dict[str, int] | None = None


TurnLike: TypeAlias = "Turn | str | Callable[[LLMRequest], Turn | str]"

_WORDS = re.compile(r"\S+\s*|\s+")


def split_words(text: str) -> list[str]:
    """Split text into word-sized deltas that join back to the same text."""
    return _WORDS.findall(text)


def _estimate_tokens(payload: Any) -> int:
    return max(1, _chars(payload) // 4)


def _chars(payload: Any) -> int:
    return len(json.dumps(payload, default=str))


class _InputEstimate:
    """Characters of a request's JSON, paying only for messages not sent before.

    A conversation resends every earlier message on each call, so measuring the whole
    request each time would make a run quadratic. Messages are append-only, so a request
    whose message at index ``i`` is the very object that ended an earlier request of
    ``i + 1`` messages starts with that request's messages: its size is known, and only
    the messages after it are measured. Entries hold the message itself, so its ``id``
    cannot be reused while the entry lives.
    """

    KEEP = 256
    """Conversation ends remembered (several sessions may share one model)."""

    def __init__(self) -> None:
        self._ends: dict[int, tuple[Any, int, int]] = {}
        """id(last message) -> (that message, messages up to it, their characters)."""

    def tokens(self, request: LLMRequest) -> int:
        messages = request.messages
        known, chars = 0, 0
        for index in range(len(messages) - 1, -1, -1):
            entry = self._ends.get(id(messages[index]))
            if entry is not None and entry[0] is messages[index] and entry[1] == index + 1:
                known, chars = entry[1], entry[2]
                break
        chars += sum(_chars(m) for m in messages[known:])
        if messages:
            self._ends[id(messages[-1])] = (messages[-1], len(messages), chars)
            if len(self._ends) > self.KEEP:
                for stale in list(self._ends)[: self.KEEP // 2]:
                    del self._ends[stale]
        return max(1, (len(request.system) + chars) // 4)


class ScriptedLLM:
    """Plays ``turns`` in order, one per model call."""

    __test__ = False  # not a pytest test class, despite living next to tests

    def __init__(self, turns: Sequence[TurnLike], *, chunk_delay: float = 0.0,
                 loop: bool = False, keep_requests: int | None = 100) -> None:
        if keep_requests is not None and keep_requests < 0:
            raise ValueError(f"keep_requests must be None or at least 0, got {keep_requests}.")
        self.turns = list(turns)
        self.chunk_delay = chunk_delay
        self.loop = loop
        self.keep_requests = keep_requests
        self.requests: list[LLMRequest] = []
        """The last ``keep_requests`` requests, newest last."""
        self.calls = 0
        """How many calls were made, kept or not."""
        self._next = 0
        self._input = _InputEstimate()

    @property
    def last_request(self) -> LLMRequest | None:
        return self.requests[-1] if self.requests else None

    def _turn(self, request: LLMRequest) -> Turn:
        if self._next >= len(self.turns):
            if not self.loop or not self.turns:
                raise LLMError(f"ScriptedLLM ran out of turns: {len(self.turns)} scripted, and "
                               f"call {self._next + 1} was requested. Add turns to the script.")
            self._next = 0
        spec = self.turns[self._next]
        self._next += 1
        if callable(spec) and not isinstance(spec, Turn):
            spec = spec(request)
        return Turn(text=spec) if isinstance(spec, str) else spec

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        self.calls += 1
        self.requests.append(request)
        if self.keep_requests is not None and len(self.requests) > self.keep_requests:
            del self.requests[0]
        turn = self._turn(request)
        pause = self.chunk_delay if turn.chunk_delay is None else turn.chunk_delay
        if turn.delay:
            await asyncio.sleep(turn.delay)
        for piece in split_words(turn.thinking):
            if pause:
                await asyncio.sleep(pause)
            yield {"type": "thinking_delta", "delta": piece}
        for piece in split_words(turn.text):
            if pause:
                await asyncio.sleep(pause)
            yield {"type": "text_delta", "delta": piece}
        if turn.error is not None:
            raise turn.error
        for i, tool_call in enumerate(turn.tool_calls):
            # Unique within a conversation, since every step adds messages.
            yield {"type": "tool_call", "id": f"toolu_{len(request.messages):04d}_{i}",
                   "name": tool_call["name"], "input": dict(tool_call.get("input", {}))}
        usage = turn.usage or {
            "input_tokens": self._input.tokens(request),
            "output_tokens": _estimate_tokens([turn.thinking, turn.text, turn.tool_calls]),
        }
        yield {"type": "usage", **usage}  # type: ignore[typeddict-item]
        yield {"type": "finish", "stop_reason": "tool_use" if turn.tool_calls else "end_turn"}

    def __repr__(self) -> str:
        return f"ScriptedLLM({len(self.turns)} turns, next={self._next}, calls={self.calls})"
