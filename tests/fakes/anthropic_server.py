"""A fake Anthropic Messages API that streams the real server-sent event sequence.

Script replies with the builders below, then point the real SDK (or the adapter) at
``fake.base_url``::

    with FakeAnthropic() as fake:
        fake.push(
            turn(Thinking("Let me see."), Text("Hi there")),
            turn(ToolUse("search", {"query": "tides"})),    # stop_reason "tool_use"
            overloaded(),                                   # HTTP 529
            rate_limited(retry_after=7),                    # HTTP 429 + retry-after
            error_mid_stream(Text("Hel"), after=4),         # `event: error` after 4 events
            dropped_mid_stream(Text("Hello"), after=4),     # socket closed after 4 events
        )
        adapter = AnthropicAdapter(api_key="sk-test", base_url=fake.base_url)
        ...
        fake.requests[0].json()["model"], fake.requests[0].headers["x-api-key"]

A turn's events are exactly the API's: ``message_start``, a ``ping``, then per block
``content_block_start`` / ``content_block_delta``... / ``content_block_stop``, then
``message_delta`` (stop_reason, usage) and ``message_stop``, each as ``event:`` and
``data:`` lines. Text and tool input are split over several deltas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._server import RecordedRequest, Reply, ScriptedServer, ScriptedToolCall, split, unused_port

__all__ = [
    "FakeAnthropic",
    "RecordedRequest",
    "Reply",
    "Text",
    "Thinking",
    "ToolUse",
    "dropped_mid_stream",
    "error_mid_stream",
    "http_error",
    "message_events",
    "overloaded",
    "rate_limited",
    "sse",
    "turn",
    "unused_port",
]

SSEEvent = tuple[str, dict[str, Any]]
"""An ``(event name, data)`` pair."""


@dataclass
class Text:
    text: str
    pieces: int = 3
    """How many ``text_delta`` events to split the text over."""


@dataclass
class Thinking:
    thinking: str
    signature: str = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
    pieces: int = 2


@dataclass
class ToolUse(ScriptedToolCall):
    """A ``tool_use`` block: its input streams as ``input_json_delta`` events."""

    id: str = "toolu_01A09q90qw90lq917835lq9"


Block = Text | Thinking | ToolUse


def message_events(
    *blocks: Block,
    stop_reason: str | None = None,
    input_tokens: int = 25,
    output_tokens: int = 17,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    model: str = "claude-sonnet-5-5",
    message_id: str = "msg_01XFDUDYJgAACzvnptvVoYEL",
) -> list[SSEEvent]:
    """The full event sequence of one streamed message."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(isinstance(b, ToolUse) for b in blocks) else "end_turn"
    start_usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens,
        "cache_read_input_tokens": cache_read_input_tokens,
        "output_tokens": 1,
    }
    events: list[SSEEvent] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(blocks):
        if isinstance(block, Text):
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in split(block.text, block.pieces)]
        elif isinstance(block, Thinking):
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": p}
                for p in split(block.thinking, block.pieces)
            ]
            deltas.append({"type": "signature_delta", "signature": block.signature})
        else:
            start = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            # The API opens a tool's input with an empty partial_json, as here.
            parts = ["", *block.json_pieces()]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in parts]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        events.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def sse(events: list[SSEEvent]) -> list[bytes]:
    """Server-sent event frames, one per event."""
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


_STREAM_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "request-id": "req_fake_0001",
}


def turn(*blocks: Block, delay: float = 0.0, **options: Any) -> Reply:
    """A complete streamed turn; ``options`` go to :func:`message_events`."""
    return Reply(
        headers=dict(_STREAM_HEADERS), chunks=sse(message_events(*blocks, **options)), delay=delay
    )


def http_error(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> Reply:
    """An error response with the API's JSON error body."""
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_fake_err",
    }
    return Reply.json(status, body, {"request-id": "req_fake_err", **(headers or {})})


def overloaded() -> Reply:
    return http_error(529, "overloaded_error", "Overloaded")


def rate_limited(retry_after: float = 7) -> Reply:
    return http_error(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
        {"retry-after": f"{retry_after:g}"},
    )


def error_mid_stream(
    *blocks: Block,
    after: int,
    error_type: str = "overloaded_error",
    message: str = "Overloaded",
) -> Reply:
    """A 200 stream whose first ``after`` events are sent, then an ``error`` event ends it."""
    events = message_events(*blocks)[:after]
    events.append(("error", {"type": "error", "error": {"type": error_type, "message": message}}))
    return Reply(headers=dict(_STREAM_HEADERS), chunks=sse(events))


def dropped_mid_stream(*blocks: Block, after: int) -> Reply:
    """A 200 stream whose socket is closed after ``after`` events."""
    return Reply(
        headers=dict(_STREAM_HEADERS), chunks=sse(message_events(*blocks)), drop_after=after
    )


class FakeAnthropic(ScriptedServer):
    """The Messages API at ``base_url`` (``POST /v1/messages``), replies from :meth:`push`."""

    path = "/v1/messages"

    @property
    def base_url(self) -> str:
        return self.origin

    def error_reply(self, status: int, message: str) -> Reply:
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        return http_error(status, kind, message)
