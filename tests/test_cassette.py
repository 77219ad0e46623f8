"""RecordingLLM and ReplayLLM: record real adapter runs against the fake API, replay them.

A replay answers only the requests it recorded: anything else is a ``CassetteMismatch``
that names the first differing field.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fakes import anthropic_server as api
from fakes.anthropic_server import (
    FakeAnthropic,
    Text,
    Thinking,
    ToolUse,
    turn,
)

from helix_lab import Agent, tool
from helix_lab.difference import MISSING
from helix_lab.llm import CassetteMismatch
from helix_lab.llm.anthropic import AnthropicAdapter
from helix_lab.llm.base import LLMAdapter, LLMError, LLMEvent, LLMRequest
from helix_lab.llm.cassette import RecordingLLM, ReplayLLM
from helix_lab.llm.scripted import ScriptedLLM, Turn, call

KEY = "sk-ant-cassette-key-5550123"
SEARCH = {"name": "search", "description": "Search.", "input_schema": {"type": "object"}}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def cassette(tmp_path: Path) -> Path:
    return tmp_path / "cassettes" / "run.jsonl"


@pytest.fixture
async def claude(fake: FakeAnthropic) -> AsyncIterator[AnthropicAdapter]:
    async with AnthropicAdapter("claude-test", api_key=KEY, base_url=fake.base_url) as adapter:
        yield adapter


def ask(text: str, **options: object) -> LLMRequest:
    return LLMRequest(model="claude-test", messages=[{"role": "user", "content": text}], **options)  # type: ignore[arg-type]


async def run(llm: LLMAdapter, request: LLMRequest) -> tuple[list[LLMEvent], LLMError | None]:
    """Every event of one call, and the error that ended it, if any."""
    events: list[LLMEvent] = []
    try:
        async for event in llm.stream(request):
            events.append(event)
    except LLMError as exc:
        return events, exc
    return events, None


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_replay_yields_exactly_the_recorded_events(fake, claude, cassette):
    fake.push(
        turn(
            Thinking("Check the tables."),
            Text("Let me search."),
            ToolUse("search", {"query": "tides"}),
        ),
        turn(Text("High tide is at 6:12."), input_tokens=80, output_tokens=12),
    )
    requests = [ask("when is high tide?", tools=[SEARCH], thinking_budget=1024), ask("thanks")]
    recording = RecordingLLM(claude, cassette)

    recorded = [await run(recording, r) for r in requests]

    assert [error for _, error in recorded] == [None, None]
    assert recorded[0][0][-3]["type"] == "tool_call"
    assert [line["request"] for line in lines(cassette)] == [r.to_json() for r in requests]
    assert [line["events"] for line in lines(cassette)] == [events for events, _ in recorded]
    assert [line["error"] for line in lines(cassette)] == [None, None]

    fake.close()  # replay must not need the network
    replay = ReplayLLM(cassette)
    replayed = [await run(replay, r) for r in requests]

    assert replayed == recorded
    assert replay.requests == requests


async def test_errors_are_recorded_and_replayed(fake, claude, cassette):
    fake.push(
        api.overloaded(),
        api.rate_limited(retry_after=4),
        api.error_mid_stream(Text("Hello world", pieces=4), after=5),
        turn(Text("Fine now.")),
    )
    recording = RecordingLLM(claude, cassette)
    recorded = [await run(recording, ask("hi")) for _ in range(4)]

    assert [line["error"] for line in lines(cassette)][:2] == [
        {
            "message": "Anthropic is overloaded (529: Overloaded).",
            "retryable": True,
            "status": 529,
            "retry_after": None,
        },
        {"message": recorded[1][1].message, "retryable": True, "status": 429, "retry_after": 4.0},
    ]
    assert lines(cassette)[2]["events"] == [
        {"type": "text_delta", "delta": "Hel"},
        {"type": "text_delta", "delta": "lo "},
    ]

    replay = ReplayLLM(cassette)
    for events, error in recorded:
        replay_events, replay_error = await run(replay, ask("hi"))
        assert replay_events == events
        if error is None:
            assert replay_error is None
        else:
            assert replay_error is not None
            assert (
                replay_error.message,
                replay_error.retryable,
                replay_error.status,
                replay_error.retry_after,
            ) == (error.message, error.retryable, error.status, error.retry_after)


async def test_running_out_of_calls_says_how_to_fix_it(fake, claude, cassette):
    fake.push(turn(Text("one")), turn(Text("two")))
    recording = RecordingLLM(claude, cassette)
    await run(recording, ask("a"))
    await run(recording, ask("b"))
    replay = ReplayLLM(cassette)
    await run(replay, ask("a"))
    await run(replay, ask("b"))

    events, error = await run(replay, ask("c"))

    assert events == []
    assert error is not None and error.retryable is False
    assert error.message == (
        f"cassette {cassette} has 2 recorded calls; call 3 was requested — "
        "re-record it with RecordingLLM."
    )


async def test_cassettes_never_contain_the_api_key(fake, claude, cassette):
    fake.push(
        turn(Text("ok")),
        api.http_error(400, "invalid_request_error", f"header x-api-key={KEY} is malformed"),
        api.http_error(401, "authentication_error", "invalid x-api-key"),
    )
    recording = RecordingLLM(claude, cassette)
    for _ in range(3):
        await run(recording, ask("hi"))

    text = cassette.read_text()
    assert len(lines(cassette)) == 3
    assert KEY not in text
    assert "ANTHROPIC_API_KEY" in text  # the 401 error and its fix were recorded


async def test_a_call_cut_short_while_recording_replays_up_to_the_cut(fake, claude, cassette):
    fake.push(turn(Text("one two three four", pieces=4)))
    recording = RecordingLLM(claude, cassette)

    stream = recording.stream(ask("count"))
    first = [await anext(stream), await anext(stream)]
    await stream.aclose()  # the caller stops reading, as on an abort

    assert lines(cassette)[0]["events"] == first
    assert lines(cassette)[0]["error"]["cut_short"] is True
    replay = ReplayLLM(cassette)
    events, error = await run(replay, ask("count"))
    assert events == first
    assert error is not None and "cut short" in error.message


async def test_recording_starts_a_fresh_cassette(fake, claude, cassette):
    cassette.parent.mkdir(parents=True)
    cassette.write_text('{"request": {}, "events": [], "error": null}\n')
    fake.push(turn(Text("new")))

    await run(RecordingLLM(claude, cassette), ask("hi"))

    assert len(lines(cassette)) == 1
    assert lines(cassette)[0]["request"]["messages"] == [{"role": "user", "content": "hi"}]


async def test_replayed_events_are_copies(fake, claude, cassette):
    fake.push(turn(ToolUse("search", {"query": "x"})))
    await run(RecordingLLM(claude, cassette), ask("hi"))
    replay = ReplayLLM(cassette)

    events, _ = await run(replay, ask("hi"))
    events[0]["input"]["query"] = "mutated"

    assert lines(cassette)[0]["events"][0]["input"] == {"query": "x"}
    assert replay.calls[0]["events"][0]["input"] == {"query": "x"}


async def test_delay_spaces_out_the_events(tmp_path):
    path = tmp_path / "slow.jsonl"
    events = [{"type": "text_delta", "delta": c} for c in "abc"] + [
        {"type": "finish", "stop_reason": "end_turn"}
    ]
    path.write_text(
        json.dumps({"request": ask("x").to_json(), "events": events, "error": None}) + "\n"
    )

    started = time.monotonic()
    replayed, _ = await run(ReplayLLM(path, delay=0.05), ask("x"))

    assert replayed == events
    assert time.monotonic() - started >= 0.15  # three gaps between four events


def test_missing_cassette_says_how_to_record_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="RecordingLLM"):
        ReplayLLM(tmp_path / "nope.jsonl")


def test_malformed_cassette_line_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"request": {}, "events": [], "error": null}\n{"events": "oops"}\n')

    with pytest.raises(ValueError, match=r"bad\.jsonl:2 "):
        ReplayLLM(path)


def test_only_sequential_matching_is_supported(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("")

    with pytest.raises(ValueError, match="sequential"):
        ReplayLLM(path, match="by-request")  # type: ignore[arg-type]


def test_both_speak_the_adapter_protocol(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("")

    assert isinstance(ReplayLLM(path), LLMAdapter)
    assert isinstance(RecordingLLM(ReplayLLM(path), path), LLMAdapter)


# -- a replay answers only what it recorded ----------------------------------------------------


async def mismatch(replay: ReplayLLM, request: LLMRequest) -> CassetteMismatch:
    events, error = await run(replay, request)
    assert events == [] and isinstance(error, CassetteMismatch), (events, error)
    return error


def recorded_cassette(path: Path, *requests: LLMRequest) -> None:
    events = [{"type": "text_delta", "delta": "ok"}, {"type": "finish", "stop_reason": "end_turn"}]
    path.write_text("".join(json.dumps({"request": r.to_json(), "events": events, "error": None})
                            + "\n" for r in requests))


async def test_a_different_request_raises_cassette_mismatch_naming_the_field(tmp_path):
    path = tmp_path / "c.jsonl"
    recorded_cassette(path, ask("when is high tide?", tools=[SEARCH]))
    replay = ReplayLLM(path)

    error = await mismatch(replay, ask("when is low tide?", tools=[SEARCH]))

    assert (error.field, error.recorded, error.got) == (
        "messages[0].content", "when is high tide?", "when is low tide?")
    assert error.call == 1 and not error.retryable
    assert str(error) == (f"cassette {path} call 1: the request differs from the recording at "
                          "messages[0].content: recorded 'when is high tide?', got 'when is "
                          "low tide?' — re-record it with RecordingLLM.")
    assert replay.requests == []  # nothing was consumed: the right request still replays
    assert (await run(replay, ask("when is high tide?", tools=[SEARCH])))[1] is None


async def test_mismatch_names_nested_and_missing_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    recorded_cassette(path, ask("x", tools=[SEARCH]))

    found = await mismatch(ReplayLLM(path), ask("x", tools=[{**SEARCH, "description": "F."}]))
    assert found.field == "tools[0].description"

    found = await mismatch(ReplayLLM(path), ask("x"))
    assert found.field == "tools[0]" and found.got is MISSING

    found = await mismatch(ReplayLLM(path), ask("x", tools=[SEARCH], max_tokens=10))
    assert found.field == "max_tokens"


async def test_ignore_lets_a_replay_cross_a_field(tmp_path):
    path = tmp_path / "c.jsonl"
    recorded_cassette(path, ask("x"))
    other_model = LLMRequest(model="claude-other", messages=[{"role": "user", "content": "x"}])

    assert "at model: recorded 'claude-test'" in str(await mismatch(ReplayLLM(path),
                                                                    other_model))
    events, error = await run(ReplayLLM(path, ignore={"model"}), other_model)
    assert error is None and events[0] == {"type": "text_delta", "delta": "ok"}


async def test_a_call_past_the_end_is_a_mismatch_on_calls(tmp_path):
    path = tmp_path / "c.jsonl"
    recorded_cassette(path, ask("x"))
    replay = ReplayLLM(path)
    await run(replay, ask("x"))

    found = await mismatch(replay, ask("x"))
    assert (found.field, found.recorded, found.got) == ("calls", 1, 2)
    assert "has 1 recorded calls; call 2 was requested" in str(found)


async def test_a_run_whose_tool_now_answers_differently_fails_naming_the_field(make_runtime,
                                                                             tmp_path):
    answers = {"value": "high tide at 6"}

    @tool
    def tides() -> str:
        """Read the tide table."""
        return answers["value"]

    agent = Agent(name="a", tools=[tides], register=False)
    path = tmp_path / "agent.jsonl"
    recording = RecordingLLM(ScriptedLLM([Turn(tool_calls=[call("tides")]), "At 6."]), path)
    runtime = make_runtime([agent], recording)
    assert await (await runtime.backend.start("a", "tides?", session_id="r1")).result() == "At 6."

    replay = make_runtime([agent], ReplayLLM(path))
    assert await (await replay.backend.start("a", "tides?", session_id="r1")).result() == "At 6."

    answers["value"] = "high tide at 7"
    again = make_runtime([agent], ReplayLLM(path))
    status = await again.run("r1", "tides?")
    assert status["status"] == "failed"
    assert "call 2: the request differs from the recording at messages[2].content[0].content:" \
           " recorded 'high tide at 6', got 'high tide at 7'" in status["error"]
