"""A fake OpenAI-compatible Chat Completions server that streams ``data:`` chunks.

::

    with FakeOpenAI() as fake:
        fake.push(
            chat_turn("Hello", reasoning="Hmm."),
            chat_turn(tool_calls=[ToolCall("search", {"query": "tides"})]),
            openai_error(429, "Rate limit reached", headers={"retry-after": "3"}),
            chat_turn("Hello there", drop_after=2),          # socket closed after 2 chunks
        )
        adapter = OpenAICompatAdapter(fake.base_url, "gpt-test")

Chunks look like OpenAI's: a first chunk with the assistant role, content / reasoning /
tool-call deltas (tool arguments split over several chunks), a chunk with
``finish_reason``, a usage chunk with empty ``choices``, then ``data: [DONE]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._server import RecordedRequest, Reply, ScriptedServer, ScriptedToolCall, split, unused_port

__all__ = [
    "FakeOpenAI",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "chat_chunks",
    "chat_turn",
    "openai_error",
    "unused_port",
]


@dataclass
class ToolCall(ScriptedToolCall):
    """A ``tool_calls`` entry: its arguments stream in ``function.arguments`` deltas."""

    id: str = "call_abc123"


def chat_chunks(
    text: str = "",
    *,
    reasoning: str = "",
    tool_calls: list[ToolCall] | tuple[ToolCall, ...] = (),
    finish_reason: str | None = None,
    prompt_tokens: int = 30,
    completion_tokens: int = 12,
    cached_tokens: int = 0,
    model: str = "gpt-test",
) -> list[dict[str, Any]]:
    """The chunk objects of one streamed completion, without ``[DONE]``."""
    if finish_reason is None:
        finish_reason = "tool_calls" if tool_calls else "stop"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"reasoning_content": p}) for p in split(reasoning, 2)]
    chunks += [chunk({"content": p}) for p in split(text, 3)]
    for index, call in enumerate(tool_calls):
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [head]}))
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
            for p in call.json_pieces()
        ]
    chunks.append(chunk({}, finish_reason))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }
    chunks.append({**chunk({}), "choices": [], "usage": usage})
    return chunks


def chat_turn(
    text: str = "", *, drop_after: int | None = None, done: bool = True, **options: Any
) -> Reply:
    """A streamed completion; ``options`` go to :func:`chat_chunks`."""
    frames = [f"data: {json.dumps(c)}\n\n".encode() for c in chat_chunks(text, **options)]
    if done:
        frames.append(b"data: [DONE]\n\n")
    return Reply(
        headers={"content-type": "text/event-stream"}, chunks=frames, drop_after=drop_after
    )


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> Reply:
    """An error response with OpenAI's JSON error body."""
    return Reply.json(status, {"error": {"message": message, "type": type, "code": None}}, headers)


class FakeOpenAI(ScriptedServer):
    """Chat Completions at ``base_url`` (``POST /v1/chat/completions``)."""

    path = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def error_reply(self, status: int, message: str) -> Reply:
        return openai_error(status, message)
