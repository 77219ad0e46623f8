"""Calling a model adapter in the adapter tests: a one-message request, the events it
streams, the error it ends with, and the canonical blocks a tool-using history is made of."""

from __future__ import annotations

from typing import Any

import pytest

from helix_lab.llm.base import LLMAdapter, LLMError, LLMEvent, LLMRequest

SEARCH = {
    "name": "search",
    "description": "Search the notes corpus.",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}
"""A tool spec with one argument."""


def search_use(tool_use_id: str, query: str) -> dict[str, Any]:
    """A canonical ``tool_use`` block calling :data:`SEARCH`."""
    return {"type": "tool_use", "id": tool_use_id, "name": "search", "input": {"query": query}}


def tool_result(tool_use_id: str, content: Any, *, is_error: bool = False) -> dict[str, Any]:
    """A canonical ``tool_result`` block."""
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": content,
            "is_error": is_error}


def ask(text: str = "hello", **options: object) -> LLMRequest:
    return LLMRequest(model="", messages=[{"role": "user", "content": text}], **options)  # type: ignore[arg-type]


async def collect(adapter: LLMAdapter, request: LLMRequest) -> list[LLMEvent]:
    return [event async for event in adapter.stream(request)]


async def fail(adapter: LLMAdapter, request: LLMRequest) -> tuple[list[LLMEvent], LLMError]:
    """The events streamed before the call failed, and its error."""
    events: list[LLMEvent] = []
    with pytest.raises(LLMError) as info:
        async for event in adapter.stream(request):
            events.append(event)
    return events, info.value
