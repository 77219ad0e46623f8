"""The one streaming protocol every LLM adapter speaks.

An adapter turns an :class:`LLMRequest` into an async stream of small, JSON-ready
events. The executor never sees a vendor SDK: it only sees these events, which is what
makes cassettes (record once, replay byte for byte) and scripted models possible.

Messages use one canonical, Anthropic-shaped form::

    {"role": "user", "content": "hello"}
    {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "...", "signature": "..."},
        {"type": "text", "text": "..."},
        {"type": "tool_use", "id": "tu_1", "name": "search", "input": {"query": "x"}},
    ]}
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "tu_1", "content": "[...]", "is_error": False},
    ]}

Events, in the order an adapter yields them for one call::

    {"type": "thinking_delta", "delta": "..."}        # zero or more
    {"type": "text_delta", "delta": "..."}            # zero or more
    {"type": "tool_call", "id": "...", "name": "...", "input": {...}}   # complete calls only
    {"type": "usage", "input_tokens": n, "output_tokens": m, ...}
    {"type": "finish", "stop_reason": "end_turn" | "tool_use" | "max_tokens" | ...}
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, TypedDict, runtime_checkable

from ..errors import LLMError

__all__ = [
    "FinishEvent",
    "LLMAdapter",
    "LLMError",
    "LLMEvent",
    "LLMRequest",
    "Message",
    "TextDeltaEvent",
    "ThinkingDeltaEvent",
    "ToolCallEvent",
    "ToolSpec",
    "UsageEvent",
]

Message: TypeAlias = dict[str, Any]
"""A canonical chat message (see the module docstring)."""


class ToolSpec(TypedDict):
    """A tool as the model sees it: a name, a description and a JSON schema."""

    name: str
    description: str
    input_schema: dict[str, Any]


class TextDeltaEvent(TypedDict):
    type: Literal["text_delta"]
    delta: str


class ThinkingDeltaEvent(TypedDict, total=False):
    type: Literal["thinking_delta"]
    delta: str
    signature: str


class ToolCallEvent(TypedDict):
    type: Literal["tool_call"]
    id: str
    name: str
    input: dict[str, Any]


class UsageEvent(TypedDict, total=False):
    type: Literal["usage"]
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    model: str
    """The model that answered, when it is not the one the request named; it is the one
    priced (``helix_lab.pricing``)."""


class FinishEvent(TypedDict):
    type: Literal["finish"]
    stop_reason: str


LLMEvent: TypeAlias = TextDeltaEvent | ThinkingDeltaEvent | ToolCallEvent | UsageEvent | FinishEvent


@dataclass
class LLMRequest:
    """Everything an adapter needs for one model call."""

    model: str
    messages: list[Message]
    system: str = ""
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str | None = None
    """``None``/``"auto"``: the model decides; a tool name: the model must call that tool."""
    max_tokens: int = 4096
    temperature: float | None = None
    thinking_budget: int | None = None
    """Token budget for extended thinking, where the provider supports it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "system": self.system,
            "messages": self.messages,
            "tools": list(self.tools),
            "tool_choice": self.tool_choice,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "thinking_budget": self.thinking_budget,
        }


@runtime_checkable
class LLMAdapter(Protocol):
    """Anything with a ``stream`` method yielding :data:`LLMEvent` dicts.

    Adapters raise :class:`LLMError` for failures; they never retry on their own, so that
    every retry is visible to the user as a chunk.
    """

    def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]: ...
