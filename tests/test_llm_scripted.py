"""ScriptedLLM: what it remembers, and what its default usage estimate costs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helix_lab.llm import ScriptedLLM, Turn
from helix_lab.llm.base import LLMRequest


class _CountsEncodings:
    """A value JSON cannot encode natively: ``default=str`` calls ``__str__`` each time
    a message holding it is encoded, which counts how often that message is measured."""

    def __init__(self) -> None:
        self.encoded = 0

    def __str__(self) -> str:
        self.encoded += 1
        return "x" * 40


async def _usage(llm: ScriptedLLM, request: LLMRequest) -> dict[str, Any]:
    events = [event async for event in llm.stream(request)]
    return next(e for e in events if e["type"] == "usage")


def _request(messages: list[dict[str, Any]], system: str = "be brief") -> LLMRequest:
    return LLMRequest(model="m", system=system, messages=messages)


async def test_each_message_is_measured_once_across_a_conversation() -> None:
    marker = _CountsEncodings()
    first = {"role": "user", "content": [{"type": "text", "text": marker}]}
    messages = [first]
    llm = ScriptedLLM(["ok"], loop=True)
    for step in range(5):
        await _usage(llm, _request(messages))
        # The executor sends a new list each step that holds the same earlier messages.
        messages = [*messages, {"role": "assistant", "content": f"reply {step}"},
                    {"role": "user", "content": f"more {step}"}]
    assert marker.encoded == 1


async def test_the_estimate_tracks_the_whole_request() -> None:
    llm = ScriptedLLM(["ok"], loop=True)
    messages = [{"role": "user", "content": "hello " * 50}]
    short = (await _usage(llm, _request(messages)))["input_tokens"]
    longer = [*messages, {"role": "assistant", "content": "fine " * 200}]
    grown = (await _usage(llm, _request(longer)))["input_tokens"]
    whole = len("be brief") + sum(len(json.dumps(m)) for m in longer)
    assert grown == whole // 4
    assert grown > short + 200  # the new message's ~1,000 characters were counted


async def test_an_equal_but_new_message_is_measured_again() -> None:
    llm = ScriptedLLM(["ok"], loop=True)
    small = (await _usage(llm, _request([{"role": "user", "content": "hi"}])))["input_tokens"]
    big = (await _usage(llm, _request([{"role": "user", "content": "hi" * 400}])))
    assert big["input_tokens"] > small


async def test_given_usage_is_reported_as_is() -> None:
    llm = ScriptedLLM([Turn(text="ok", usage={"input_tokens": 7, "output_tokens": 2})])
    usage = await _usage(llm, _request([{"role": "user", "content": "hi"}]))
    assert usage == {"type": "usage", "input_tokens": 7, "output_tokens": 2}


async def test_only_the_last_requests_are_kept_but_every_call_is_counted() -> None:
    llm = ScriptedLLM(["ok"], loop=True, keep_requests=3)
    for n in range(10):
        await _usage(llm, _request([{"role": "user", "content": f"call {n}"}]))
    assert llm.calls == 10
    assert [r.messages[0]["content"] for r in llm.requests] == ["call 7", "call 8", "call 9"]
    assert llm.last_request is llm.requests[-1]


async def test_keep_requests_none_keeps_all_and_the_default_keeps_a_hundred() -> None:
    everything = ScriptedLLM(["ok"], loop=True, keep_requests=None)
    default = ScriptedLLM(["ok"], loop=True)
    for n in range(150):
        request = _request([{"role": "user", "content": f"call {n}"}])
        await _usage(everything, request)
        await _usage(default, request)
    assert len(everything.requests) == 150
    assert len(default.requests) == 100
    assert default.requests[0].messages[0]["content"] == "call 50"


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_requests"):
        ScriptedLLM(["ok"], keep_requests=-1)
