"""Calling a model adapter in the adapter tests: a one-message request, the events it
streams, and the error it ends with."""

from __future__ import annotations

import pytest

from helix_lab.llm.base import LLMAdapter, LLMError, LLMEvent, LLMRequest

SEARCH = {
    "name": "search",
    "description": "Search the notes corpus.",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}
"""A tool spec with one argument."""


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
