"""``ScriptedLLM``: a deterministic model whose turns you write in Python.

::

    llm = ScriptedLLM([
        Turn(thinking="Look it up first.", tool_calls=[call("search", query="otters")]),
        Turn(text="Otters hold hands while they sleep."),
    ])

A turn may also be a plain string (a text answer) or a function of the request that
returns a turn, for models that react to what they are sent. Delays make streaming
visible; an ``error`` makes the call fail, after any text of the turn has streamed, as a
real connection that drops mid-stream would. Every request is kept in ``requests``.
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
    return max(1, len(json.dumps(payload, default=str)) // 4)


class ScriptedLLM:
    """Plays ``turns`` in order, one per model call."""

    __test__ = False  # not a pytest test class, despite living next to tests

    def __init__(self, turns: Sequence[TurnLike], *, chunk_delay: float = 0.0,
                 loop: bool = False) -> None:
        self.turns = list(turns)
        self.chunk_delay = chunk_delay
        self.loop = loop
        self.requests: list[LLMRequest] = []
        self._next = 0

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
        self.requests.append(request)
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
            "input_tokens": _estimate_tokens([request.system, request.messages]),
            "output_tokens": _estimate_tokens([turn.thinking, turn.text, turn.tool_calls]),
        }
        yield {"type": "usage", **usage}  # type: ignore[typeddict-item]
        yield {"type": "finish", "stop_reason": "tool_use" if turn.tool_calls else "end_turn"}

    def __repr__(self) -> str:
        return f"ScriptedLLM({len(self.turns)} turns, next={self._next})"
