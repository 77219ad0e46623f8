"""Both SSE framings in the kernel: the real ``/sse`` route behind the in-process
transport, as ``RemoteBackend`` reads it without a socket.

A plain reader gets the seed's one event per chunk; ``batch=1`` (what our client asks
for) gets one event per page. Either way every chunk arrives once, in order, and a
reconnect with ``Last-Event-ID`` carries on after it, across pages and while the run is
still writing. ``helix serve`` (both engines) is checked in test_serve_remote.py, the
Workflows approach in test_workflows_serve.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from helpers import Runtime, assert_contiguous, check_sse_framings, framed_chunks

from helix_lab import Agent, RemoteBackend
from helix_lab.client.transport import NamespaceTransport
from helix_lab.runtime.stream import PAGE

DELTAS = PAGE + 300
"""Deltas before the model waits at the gate: more than a page of them."""


class GatedLLM:
    """Streams ``DELTAS`` text deltas, waits until ``gate`` opens, then streams as many."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def stream(self, request: Any) -> AsyncIterator[dict[str, Any]]:
        for i in range(DELTAS):
            yield {"type": "text_delta", "delta": f"a{i} "}
        self.waiting.set()
        await self.gate.wait()
        for i in range(DELTAS):
            yield {"type": "text_delta", "delta": f"b{i} "}
        yield {"type": "usage", "input_tokens": 1, "output_tokens": 1}
        yield {"type": "finish", "stop_reason": "end_turn"}


@pytest.fixture
def gated(make_runtime: Any) -> tuple[Runtime, GatedLLM]:
    llm = GatedLLM()
    return make_runtime([Agent(name="talker", register=False)], llm), llm


def _http(rt: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=NamespaceTransport(rt.ns), base_url="http://helix.local",
                             timeout=None)


async def test_both_framings_carry_every_chunk_once_across_pages(
        gated: tuple[Runtime, GatedLLM]) -> None:
    rt, llm = gated
    llm.gate.set()
    assert (await rt.run("long", agent_type="talker"))["status"] == "completed"
    expected = await rt.chunks("long")
    assert len(expected) > 2 * PAGE
    async with _http(rt) as http:
        await check_sse_framings(http, "/sessions/long/sse", expected)
        seed_route = await http.get("/stream/long", params={"batch": 1})  # the query goes along
        assert framed_chunks(seed_route.text, batch=True) == expected


async def test_a_batched_reader_follows_a_live_run_exactly_once(
        gated: tuple[Runtime, GatedLLM]) -> None:
    rt, llm = gated
    backend = RemoteBackend("http://helix.local", transport=NamespaceTransport(rt.ns))
    try:
        handle = await backend.start("talker", "go", session_id="live")
        got: list[dict[str, Any]] = []
        async with aclosing(backend.stream("live", follow=True)) as stream:
            async for chunk in stream:
                got.append(chunk)
                if chunk["type"] == "text_delta" and chunk["delta"] == f"a{DELTAS - 1} ":
                    break  # every chunk so far was read while the run is held at the gate
        assert rt.server("live").is_executing and not llm.gate.is_set()
        assert rt.server("live").stream._tails == set()  # the reader that left is forgotten
        llm.gate.set()
        async for chunk in backend.stream("live", from_sequence=got[-1]["sequence"]):
            got.append(chunk)
        assert (await handle.status())["status"] == "completed"
    finally:
        await backend.aclose()
    assert got == await rt.chunks("live")
    assert_contiguous(got)
    assert [c["delta"] for c in got if c["type"] == "text_delta"] == [
        *(f"a{i} " for i in range(DELTAS)), *(f"b{i} " for i in range(DELTAS))]
