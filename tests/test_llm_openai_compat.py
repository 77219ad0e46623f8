"""OpenAICompatAdapter against a fake Chat Completions server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from adapter_calls import SEARCH, ask, collect, fail, search_use, tool_result
from fakes.openai_server import (
    FakeOpenAI,
    Reply,
    ToolCall,
    chat_chunks,
    chat_turn,
    openai_error,
    unused_port,
)

from helix_lab.llm.base import LLMRequest
from helix_lab.llm.openai_compat import OpenAICompatAdapter, to_openai_messages

KEY = "sk-openai-test-9876543210-secret"


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def adapter(fake: FakeOpenAI) -> AsyncIterator[OpenAICompatAdapter]:
    async with OpenAICompatAdapter(fake.base_url, "gpt-test", api_key=KEY) as adapter:
        yield adapter


def sse_reply(chunks: list[object], *, done: bool = True) -> Reply:
    frames = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
    return Reply(
        headers={"content-type": "text/event-stream"}, chunks=frames + [b"data: [DONE]\n\n"] * done
    )


async def test_text_and_reasoning_stream_with_usage(fake, adapter):
    fake.push(
        chat_turn(
            "Hello there, world",
            reasoning="Think first.",
            prompt_tokens=40,
            completion_tokens=11,
            cached_tokens=8,
        )
    )

    events = await collect(adapter, ask(system="Be brief.", temperature=0.3))

    assert [e["type"] for e in events] == ["thinking_delta"] * 2 + ["text_delta"] * 3 + [
        "usage",
        "finish",
    ]
    assert "".join(e["delta"] for e in events[:2]) == "Think first."
    assert [e["delta"] for e in events[2:5]] == ["Hello ", "there,", " world"]
    assert events[5] == {
        "type": "usage",
        "input_tokens": 32,
        "output_tokens": 11,
        "cache_read_input_tokens": 8,
        "cache_creation_input_tokens": 0,
        "model": "gpt-test",  # the model called is the one priced
    }
    assert events[6] == {"type": "finish", "stop_reason": "end_turn"}

    request = fake.requests[0]
    body = request.json()
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 4096
    assert "tools" not in body


async def test_tool_call_arguments_accumulate_across_chunks(fake, adapter):
    arguments = {"query": "neap tides", "limit": 3}
    fake.push(
        chat_turn(
            "Looking.",
            tool_calls=[
                ToolCall("search", arguments, id="call_7", pieces=5),
                ToolCall("search", {"query": "moon"}, id="call_8"),
            ],
        )
    )

    events = await collect(adapter, ask(tools=[SEARCH], tool_choice="search"))

    calls = [e for e in events if e["type"] == "tool_call"]
    assert calls == [
        {"type": "tool_call", "id": "call_7", "name": "search", "input": arguments},
        {"type": "tool_call", "id": "call_8", "name": "search", "input": {"query": "moon"}},
    ]
    assert [e["type"] for e in events][-4:] == ["tool_call", "tool_call", "usage", "finish"]
    assert events[-1] == {"type": "finish", "stop_reason": "tool_use"}
    body = fake.requests[0].json()
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": SEARCH["description"],
                "parameters": SEARCH["input_schema"],
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "search"}}


async def test_tool_calls_reported_with_stop_still_finish_as_tool_use(fake, adapter):
    fake.push(chat_turn(tool_calls=[ToolCall("search", {"query": "x"})], finish_reason="stop"))

    events = await collect(adapter, ask(tools=[SEARCH]))

    assert events[-1] == {"type": "finish", "stop_reason": "tool_use"}
    assert fake.requests[0].json()["tool_choice"] == "auto"


@pytest.mark.parametrize(
    ("reason", "expected"), [("length", "max_tokens"), ("content_filter", "refusal")]
)
async def test_finish_reasons_are_mapped(fake, adapter, reason, expected):
    fake.push(chat_turn("cut", finish_reason=reason))

    events = await collect(adapter, ask())

    assert events[-1] == {"type": "finish", "stop_reason": expected}


async def test_stream_without_done_but_with_finish_reason_completes(fake, adapter):
    fake.push(chat_turn("ok", done=False))

    events = await collect(adapter, ask())

    assert events[-1] == {"type": "finish", "stop_reason": "end_turn"}


async def test_no_key_sends_no_authorization_header(fake):
    fake.push(chat_turn("hi"))
    async with OpenAICompatAdapter(fake.base_url, "llama3") as adapter:  # Ollama style
        await collect(adapter, ask())

    assert "authorization" not in fake.requests[0].headers


async def test_key_falls_back_to_the_environment(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    fake.push(chat_turn("hi"))
    async with OpenAICompatAdapter(fake.base_url + "/", "gpt-test") as adapter:  # trailing slash ok
        await collect(adapter, ask())

    assert fake.requests[0].headers["authorization"] == "Bearer sk-env"


async def test_the_adapter_closes_only_a_client_it_made(fake):
    fake.push(chat_turn("hi"), chat_turn("again"))
    given = httpx.AsyncClient()
    async with OpenAICompatAdapter(fake.base_url, "gpt-test", http_client=given) as adapter:
        await collect(adapter, ask())
    assert not given.is_closed  # the caller's client is the caller's to close
    await given.aclose()

    async with OpenAICompatAdapter(fake.base_url, "gpt-test") as adapter:
        await collect(adapter, ask())
    assert adapter._client.is_closed


def test_canonical_history_is_converted_to_chat_messages():
    history = [
        {"role": "user", "content": "find tides"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "use search", "signature": "sig"},
                {"type": "text", "text": "Searching."},
                search_use("tu_1", "tides"),
                search_use("tu_2", "moon"),
            ],
        },
        {
            "role": "user",
            "content": [
                tool_result("tu_1", '["6am"]'),
                tool_result("tu_2", [{"type": "text", "text": "timeout"}], is_error=True),
                {"type": "text", "text": "Be quick."},
            ],
        },
    ]

    assert to_openai_messages("sys", history) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "find tides"},
        {
            "role": "assistant",
            "content": "Searching.",
            "tool_calls": [
                {
                    "id": "tu_1",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"query": "tides"}'},
                },
                {
                    "id": "tu_2",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"query": "moon"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "tu_1", "content": '["6am"]'},
        {"role": "tool", "tool_call_id": "tu_2", "content": "Error: timeout"},
        {"role": "user", "content": "Be quick."},
    ]


async def test_history_goes_over_the_wire_converted(fake, adapter):
    history = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "tu_1", "name": "search", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "[]"}],
        },
    ]
    fake.push(chat_turn("done"))

    await collect(adapter, LLMRequest(model="gpt-x", messages=history))

    body = fake.requests[0].json()
    assert body["model"] == "gpt-x"
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "tu_1", "type": "function", "function": {"name": "search", "arguments": "{}"}}
        ],
    }
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "tu_1", "content": "[]"}


# -- failures -----------------------------------------------------------------------------


async def test_429_is_retryable_with_retry_after(fake, adapter):
    fake.push(
        openai_error(
            429, "Rate limit reached", type="rate_limit_error", headers={"retry-after": "3"}
        )
    )

    _, error = await fail(adapter, ask())

    assert (error.retryable, error.status, error.retry_after) == (True, 429, 3.0)
    assert "Rate limit reached" in error.message


async def test_5xx_is_retryable(fake, adapter):
    fake.push(openai_error(503, "upstream busy", type="server_error"))

    _, error = await fail(adapter, ask())

    assert (error.retryable, error.status) == (True, 503)


async def test_401_is_not_retryable_and_names_the_fix(fake, adapter):
    fake.push(openai_error(401, f"Incorrect API key provided: {KEY}"))

    _, error = await fail(adapter, ask())

    assert (error.retryable, error.status) == (False, 401)
    assert "OPENAI_API_KEY" in error.message
    assert KEY not in str(error)


async def test_404_names_the_model_and_base_url(fake, adapter):
    fake.push(openai_error(404, 'model "gpt-test" not found, try pulling it first'))

    _, error = await fail(adapter, ask())

    assert (error.retryable, error.status) == (False, 404)
    assert "'gpt-test'" in error.message and "base_url" in error.message


async def test_dropped_connection_is_retryable(fake, adapter):
    fake.push(chat_turn("Hello there, world", drop_after=3))

    events, error = await fail(adapter, ask())

    assert [e["delta"] for e in events] == ["Hello ", "there,"]
    assert error.retryable is True and error.status is None
    assert "dropped" in error.message


async def test_clean_end_before_the_last_chunk_is_retryable(fake, adapter):
    fake.push(sse_reply(chat_chunks("Hello")[:2], done=False))

    _, error = await fail(adapter, ask())

    assert error.retryable is True
    assert "incomplete" in error.message


async def test_error_chunk_mid_stream(fake, adapter):
    chunks = [*chat_chunks("Hello")[:2], {"error": {"message": "model crashed", "code": 500}}]
    fake.push(sse_reply(chunks))

    events, error = await fail(adapter, ask())

    assert events == [{"type": "text_delta", "delta": "He"}]
    assert (error.retryable, error.status) == (True, 500)
    assert "model crashed" in error.message


async def test_invalid_tool_arguments_are_a_clear_error(fake, adapter):
    fake.push(chat_turn(tool_calls=[ToolCall("search", '{"query": ')]))  # cut short

    _, error = await fail(adapter, ask(tools=[SEARCH]))

    assert error.retryable is False
    assert "invalid JSON" in error.message and "'search'" in error.message


async def test_unreachable_server_is_retryable():
    url = f"http://127.0.0.1:{unused_port()}/v1"
    async with OpenAICompatAdapter(url, "gpt-test", api_key=KEY) as adapter:
        _, error = await fail(adapter, ask())

    assert error.retryable is True
    assert "Is the server running?" in error.message
    assert KEY not in error.message


def test_repr_never_shows_the_key():
    adapter = OpenAICompatAdapter("http://localhost:11434/v1", "llama3", api_key=KEY)

    assert KEY not in repr(adapter)
    assert "localhost:11434" in repr(adapter)


async def test_a_reply_that_is_not_an_event_stream_is_a_clear_error(fake, adapter):
    fake.push(Reply(headers={"content-type": "application/json"},
                    body=json.dumps({"choices": []}).encode()))

    _, error = await fail(adapter, ask())

    assert "did not answer with a stream of server-sent events" in error.message
    assert fake.base_url in error.message and error.retryable is False
