"""Claude against a fake Messages API, through both users of the one wire module.

Every test taking the ``adapter`` fixture runs twice: on :class:`AnthropicAdapter` (the
real anthropic SDK) and on the Worker's :class:`FetchAnthropicLLM` (over the ``helix
serve`` stand-in's ``fetch``). Both send the same body and fail with the same errors,
because :mod:`helix_lab.llm.anthropic_wire` writes both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import httpx
import pytest
from adapter_calls import SEARCH, ask, collect, fail, search_use, tool_result
from fakes import anthropic_server as api
from fakes.anthropic_server import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
    Text,
    Thinking,
    ToolUse,
    turn,
)

from helix_lab.llm.anthropic import AnthropicAdapter
from helix_lab.llm.base import LLMAdapter, LLMEvent, LLMRequest
from helix_lab.worker_bundle.fetch_llm import FetchAnthropicLLM
from helix_lab.worker_bundle.standin.workers import fetch as standin_fetch

KEY = "sk-ant-test-0123456789-secret"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(params=["sdk", "fetch"])
async def adapter(request: pytest.FixtureRequest,
                  fake: FakeAnthropic) -> AsyncIterator[LLMAdapter]:
    if request.param == "fetch":
        yield FetchAnthropicLLM(KEY, fetch=standin_fetch, base_url=fake.base_url,
                                model_default="claude-test")
        return
    async with AnthropicAdapter("claude-test", api_key=KEY, base_url=fake.base_url) as adapter:
        yield adapter


def sent_key(request: RecordedRequest) -> str | None:
    """The API key the SDK sent; newer SDKs send it as a bearer token, older as x-api-key."""
    if "x-api-key" in request.headers:
        return request.headers["x-api-key"]
    return request.headers.get("authorization", "").removeprefix("Bearer ") or None


def text_of(events: list[LLMEvent], kind: str) -> str:
    return "".join(e["delta"] for e in events if e["type"] == kind)  # type: ignore[typeddict-item]


# -- successful turns -------------------------------------------------------------------


async def test_text_turn_streams_deltas_usage_and_finish(fake, adapter):
    fake.push(
        turn(
            Text("Hello there, world", pieces=3),
            input_tokens=31,
            output_tokens=9,
            cache_read_input_tokens=4,
            cache_creation_input_tokens=2,
        )
    )

    events = await collect(adapter, ask(system="Be brief."))

    assert events == [
        {"type": "text_delta", "delta": "Hello "},
        {"type": "text_delta", "delta": "there,"},
        {"type": "text_delta", "delta": " world"},
        {
            "type": "usage",
            "input_tokens": 31,
            "output_tokens": 9,
            "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 2,
        },
        {"type": "finish", "stop_reason": "end_turn"},
    ]
    body = fake.requests[0].json()
    assert fake.requests[0].path == "/v1/messages"
    assert body["model"] == "claude-test"  # model_default fills an empty request.model
    assert body["system"] == "Be brief."
    assert body["stream"] is True
    assert body["max_tokens"] == 4096
    assert body["messages"] == [{"role": "user", "content": "hello"}]
    assert "tools" not in body and "tool_choice" not in body and "thinking" not in body
    assert "temperature" not in body
    assert sent_key(fake.requests[0]) == KEY


async def test_thinking_arrives_before_text_with_its_signature(fake, adapter):
    fake.push(
        turn(Thinking("Tides follow the moon.", signature="sig-123"), Text("High tide at 6."))
    )

    events = await collect(adapter, ask(thinking_budget=2048, max_tokens=8000))

    kinds = [e["type"] for e in events]
    assert kinds == ["thinking_delta"] * 3 + ["text_delta"] * 3 + ["usage", "finish"]
    assert text_of(events, "thinking_delta") == "Tides follow the moon."
    assert events[2] == {"type": "thinking_delta", "delta": "", "signature": "sig-123"}
    assert text_of(events, "text_delta") == "High tide at 6."
    body = fake.requests[0].json()
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 8000


async def test_tool_call_input_is_parsed_from_split_json_deltas(fake, adapter):
    arguments = {"query": "spring tides", "limit": 5, "filters": {"tags": ["moon", "sea"]}}
    fake.push(turn(Text("Let me look."), ToolUse("search", arguments, id="toolu_9", pieces=6)))

    events = await collect(adapter, ask(tools=[SEARCH]))

    assert [e["type"] for e in events] == ["text_delta"] * 3 + ["tool_call", "usage", "finish"]
    assert events[3] == {"type": "tool_call", "id": "toolu_9", "name": "search", "input": arguments}
    assert events[-1] == {"type": "finish", "stop_reason": "tool_use"}
    body = fake.requests[0].json()
    assert body["tools"] == [SEARCH]
    assert body["tool_choice"] == {"type": "auto"}


async def test_tool_without_arguments_gets_an_empty_input(fake, adapter):
    fake.push(turn(ToolUse("now", {})))

    events = await collect(adapter, ask(tools=[SEARCH | {"name": "now"}]))

    assert events[0] == {
        "type": "tool_call",
        "id": "toolu_01A09q90qw90lq917835lq9",
        "name": "now",
        "input": {},
    }


async def test_request_mapping_of_tool_choice_temperature_and_history(fake, adapter):
    history = [
        {"role": "user", "content": "find tides"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "search it", "signature": "sig"},
                search_use("tu_1", "tides"),
            ],
        },
        {"role": "user", "content": [tool_result("tu_1", '["6am"]')]},
    ]
    fake.push(turn(Text("6am")))

    await collect(
        adapter,
        LLMRequest(
            model="claude-other",
            messages=history,
            tools=[SEARCH],
            tool_choice="search",
            temperature=0.25,
            max_tokens=100,
        ),
    )

    body = fake.requests[0].json()
    assert body["model"] == "claude-other"
    assert body["tool_choice"] == {"type": "tool", "name": "search"}
    assert body["temperature"] == 0.25
    assert body["messages"] == history  # canonical messages go over unchanged


async def test_usage_in_message_delta_replaces_the_start_counts(fake, adapter):
    events = api.message_events(Text("hi"), input_tokens=10, output_tokens=3)
    events[-2][1]["usage"] = {"output_tokens": 3, "input_tokens": 12, "cache_read_input_tokens": 7}
    fake.push(Reply(headers={"content-type": "text/event-stream"}, chunks=api.sse(events)))

    usage = [e for e in await collect(adapter, ask()) if e["type"] == "usage"]

    assert usage == [
        {
            "type": "usage",
            "input_tokens": 12,
            "output_tokens": 3,
            "cache_read_input_tokens": 7,
            "cache_creation_input_tokens": 0,
        }
    ]


async def test_api_key_falls_back_to_the_environment(fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    fake.push(turn(Text("ok")))

    async with AnthropicAdapter("claude-test", base_url=fake.base_url) as adapter:
        await collect(adapter, ask())

    assert sent_key(fake.requests[0]) == "sk-from-env"


async def test_a_given_client_is_used_without_its_retries(fake):
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.base_url, max_retries=5)
    fake.push(api.overloaded(), api.overloaded(), turn(Text("never reached")))

    async with AnthropicAdapter("claude-test", client=client) as adapter:
        _, error = await fail(adapter, ask())

    assert error.status == 529
    assert len(fake.requests) == 1  # the SDK did not retry behind our back
    assert not client.is_closed()  # the adapter leaves a client it was given open
    await client.close()


# -- failures -----------------------------------------------------------------------------


async def test_529_overloaded_is_retryable_and_not_retried_by_the_sdk(fake, adapter):
    fake.push(api.overloaded(), turn(Text("second try")))

    events, error = await fail(adapter, ask())

    assert events == []
    assert error.retryable is True
    assert error.status == 529
    assert "overloaded" in error.message.lower()
    assert KEY not in str(error)
    assert len(fake.requests) == 1
    assert fake.pending == 1


async def test_429_is_retryable_with_the_servers_retry_after(fake, adapter):
    fake.push(api.rate_limited(retry_after=7))

    _, error = await fail(adapter, ask())

    assert (error.retryable, error.status, error.retry_after) == (True, 429, 7.0)
    assert "rate limit" in error.message
    assert len(fake.requests) == 1


async def test_5xx_is_retryable(fake, adapter):
    fake.push(api.http_error(500, "api_error", "Internal server error"))

    _, error = await fail(adapter, ask())

    assert (error.retryable, error.status, error.retry_after) == (True, 500, None)


async def test_error_event_mid_stream_is_retryable_after_the_deltas_so_far(fake, adapter):
    fake.push(api.error_mid_stream(Text("Hello world", pieces=4), after=5))

    events, error = await fail(adapter, ask())

    assert events == [
        {"type": "text_delta", "delta": "Hel"},
        {"type": "text_delta", "delta": "lo "},
    ]
    assert error.retryable is True
    assert error.status == 529
    assert "mid-response" in error.message and "overloaded_error" in error.message
    assert KEY not in str(error)


async def test_invalid_request_error_event_mid_stream_is_not_retryable(fake, adapter):
    fake.push(
        api.error_mid_stream(Text("Hi"), after=2, error_type="invalid_request_error", message="bad")
    )

    _, error = await fail(adapter, ask())

    assert (error.retryable, error.status) == (False, 400)


async def test_dropped_connection_mid_stream_is_retryable(fake, adapter):
    fake.push(api.dropped_mid_stream(Text("Hello world", pieces=4), after=5))

    events, error = await fail(adapter, ask())

    assert text_of(events, "text_delta") == "Hello "
    assert error.retryable is True
    assert error.status is None
    assert "dropped" in error.message
    if isinstance(adapter, AnthropicAdapter):  # the Worker's drops the JS error it got
        assert type(error.__cause__).__name__ == "RemoteProtocolError"


async def test_stream_that_ends_without_message_stop_is_retryable(fake, adapter):
    events = api.message_events(Text("Hello"))[:-2]  # no message_delta, no message_stop
    fake.push(Reply(headers={"content-type": "text/event-stream"}, chunks=api.sse(events)))

    _, error = await fail(adapter, ask())

    assert error.retryable is True
    assert "message_stop" in error.message


async def test_connection_refused_is_retryable():
    port = api.unused_port()
    async with AnthropicAdapter(
        "claude-test", api_key=KEY, base_url=f"http://127.0.0.1:{port}"
    ) as adapter:
        _, error = await fail(adapter, ask())

    assert error.retryable is True
    assert f"127.0.0.1:{port}" in error.message
    assert KEY not in str(error)


async def test_401_is_not_retryable_and_names_the_fix(fake, adapter):
    fake.push(api.http_error(401, "authentication_error", "invalid x-api-key"))

    _, error = await fail(adapter, ask())

    assert error.retryable is False
    assert error.status == 401
    assert error.message == (
        "Anthropic rejected the API key (401). Set ANTHROPIC_API_KEY to a valid key."
    )
    assert KEY not in str(error) and KEY not in repr(error)


@pytest.mark.parametrize(
    ("status", "kind", "hint"),
    [
        (400, "invalid_request_error", "max_tokens: must be positive"),
        (403, "permission_error", "claude-test"),
        (404, "not_found_error", "claude-test"),
    ],
)
async def test_client_errors_are_not_retryable(fake, adapter, status, kind, hint):
    fake.push(api.http_error(status, kind, "max_tokens: must be positive"))

    _, error = await fail(adapter, ask())

    assert (error.retryable, error.status) == (False, status)
    assert hint in error.message
    assert len(fake.requests) == 1


async def test_a_server_message_echoing_the_key_is_redacted(fake, adapter):
    fake.push(api.http_error(400, "invalid_request_error", f"bad header value {KEY}"))

    _, error = await fail(adapter, ask())

    assert KEY not in error.message
    assert "***" in error.message


async def test_invalid_tool_json_is_a_clear_non_retryable_error(fake, adapter):
    fake.push(turn(ToolUse("search", '{"query": ')))  # cut short, as at max_tokens

    _, error = await fail(adapter, ask(tools=[SEARCH]))

    assert error.retryable is False
    assert "invalid JSON" in error.message and "'search'" in error.message


async def test_missing_model_is_a_clear_error():
    async with AnthropicAdapter(api_key=KEY, base_url="http://127.0.0.1:9") as adapter:
        _, error = await fail(adapter, ask())

    assert "model" in error.message and error.retryable is False


async def test_tool_choice_without_tools_is_rejected_before_sending(fake, adapter):
    _, error = await fail(adapter, ask(tool_choice="search"))

    assert "no tools" in error.message
    assert fake.requests == []


# -- construction -----------------------------------------------------------------------


def test_repr_never_shows_the_key():
    adapter = AnthropicAdapter("claude-test", api_key=KEY, base_url="http://127.0.0.1:9")

    assert KEY not in repr(adapter)
    assert "claude-test" in repr(adapter)
    assert isinstance(adapter, LLMAdapter)


def test_http_client_of_the_wrong_library_gets_a_clear_error():
    with pytest.raises(TypeError, match=r"httpx2\.AsyncClient"):
        AnthropicAdapter(api_key=KEY, http_client=httpx.AsyncClient())


def test_client_and_connection_options_are_exclusive():
    client = anthropic.AsyncAnthropic(api_key=KEY)
    with pytest.raises(TypeError, match="either client="):
        AnthropicAdapter(client=client, base_url="http://example.invalid")


def test_importing_the_module_does_not_import_the_sdk():
    code = "import sys, helix_lab.llm.anthropic; print(json.dumps('anthropic' in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", "import json; " + code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert json.loads(result.stdout) is False
