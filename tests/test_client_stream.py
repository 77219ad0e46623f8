"""The client's stream: reconnects after a drop, drops repeats, and resyncs when the
server went back. Driven through a RemoteBackend on an httpx MockTransport, so each
reply of the 'server' is exactly what the test says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from helix_lab.client import RemoteBackend
from helix_lab.runtime.sse import encode_batch, encode_chunk, encode_end
from helix_lab.widgets.view_state import ViewState


def chunk(sequence: int, text: str) -> dict[str, Any]:
    return {"type": "text_delta", "sequence": sequence, "step": 1, "delta": text}


def sse(chunks: list[dict[str, Any]], *, end: bool) -> bytes:
    return b"".join(encode_chunk(c) for c in chunks) + (encode_end() if end else b"")


class Server:
    """Answers /sse from a list of scripted bodies and /status with a scripted last sequence."""

    def __init__(self, bodies: list[bytes], last_sequence: int) -> None:
        self.bodies = bodies
        self.last_sequence = last_sequence
        self.asked_from: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"sessionId": "s", "status": "running",
                                             "isExecuting": True,
                                             "lastSequence": self.last_sequence})
        self.asked_from.append(int(request.url.params["fromSequence"]))
        return httpx.Response(200, content=self.bodies.pop(0),
                              headers={"content-type": "text/event-stream"})


async def collect(server: Server) -> list[dict[str, Any]]:
    backend = RemoteBackend("http://helix.test", "t", transport=httpx.MockTransport(server))
    try:
        return [c async for c in backend.stream("s")]
    finally:
        await backend.aclose()


async def test_a_dropped_stream_reconnects_from_the_last_sequence_without_repeats() -> None:
    server = Server([sse([chunk(1, "a"), chunk(2, "b")], end=False),
                     sse([chunk(2, "b"), chunk(3, "c")], end=True)], last_sequence=3)
    got = await collect(server)
    assert [c["sequence"] for c in got] == [1, 2, 3]
    assert server.asked_from == [0, 2]


async def test_a_server_that_went_back_gets_a_stream_resync() -> None:
    # The server had sent 1..3, then lost 3 (storage restored): its next chunk is a new 3.
    server = Server([sse([chunk(1, "a"), chunk(2, "b"), chunk(3, "lost")], end=False),
                     sse([chunk(3, "new"), chunk(4, "more")], end=True)], last_sequence=2)
    got = await collect(server)
    assert [(c["type"], c["sequence"]) for c in got] == [
        ("text_delta", 1), ("text_delta", 2), ("text_delta", 3), ("stream_resync", 2),
        ("text_delta", 3), ("text_delta", 4)]
    assert got[3]["previousSequence"] == 3 and "reset" in got[3]["reason"]
    assert server.asked_from == [0, 2]
    view = ViewState("a", "s")
    for c in got:
        view.apply(c)
    assert view.last_sequence == 4
    assert "".join(i.text for i in view.items if i.kind == "text").endswith("newmore")
    assert any("resynced" in i.text for i in view.items)


async def test_the_token_is_sent_and_never_shown() -> None:
    seen: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"agents": ["researcher"]})

    backend = RemoteBackend("http://helix.test", "s3cret-token",
                            transport=httpx.MockTransport(server))
    assert await backend.agents() == ["researcher"]
    assert seen == ["Bearer s3cret-token"]
    assert "s3cret-token" not in repr(backend)
    await backend.aclose()


async def test_the_client_asks_for_batches_and_reads_either_framing_alike() -> None:
    # msgspec decodes the client's pages; what it refuses (Infinity, a lone surrogate) is
    # decoded again by json.loads, so either framing gives exactly what the server sent.
    sent = [chunk(1, "a") | {"big": 2**70 + 1}, chunk(2, "b") | {"far": float("inf")},
            chunk(3, "é\n\ud800") | {"nested": {"list": [1, 2.5, None, True, -2**80 - 1]}}]
    batched = [*(encode_batch(c["sequence"], json.dumps(c)) for c in sent), encode_end()]
    asked: list[dict[str, str]] = []
    for reads in (batched, [sse(sent, end=True)]):
        def server(request: httpx.Request, reads: list[bytes] = reads) -> httpx.Response:
            asked.append(dict(request.url.params))

            async def body() -> AsyncIterator[bytes]:
                for read in reads:  # one read each: each is decoded on its own
                    yield read

            return httpx.Response(200, content=body(),
                                  headers={"content-type": "text/event-stream"})

        backend = RemoteBackend("http://helix.test", "t", transport=httpx.MockTransport(server))
        try:
            assert [c async for c in backend.stream("s")] == sent
        finally:
            await backend.aclose()
    assert asked == [{"fromSequence": "0", "batch": "1"}] * 2


# -- the in-kernel stream ------------------------------------------------------------------


def _calculator_runtime(make_runtime: Any) -> Any:
    from helix_lab import Agent, tool
    from helix_lab.llm import ScriptedLLM, Turn, call

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    llm = ScriptedLLM([Turn(thinking="Use the tool.", tool_calls=[call("add", a=2, b=3)]),
                       "2 + 3 = 5"], loop=True)
    return make_runtime([Agent(name="calculator", tools=[add], register=False)], llm)


async def test_the_local_stream_gives_what_sse_gives_without_http(
        make_runtime: Any, monkeypatch: Any) -> None:
    from helix_lab.client.transport import NamespaceTransport

    runtime = _calculator_runtime(make_runtime)
    handle = await runtime.backend.start("calculator", "What is 2 + 3?", session_id="calc")
    assert await handle.result() == "2 + 3 = 5"

    paths: list[str] = []
    real = NamespaceTransport.handle_async_request

    async def counting(self: Any, request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return await real(self, request)

    monkeypatch.setattr(NamespaceTransport, "handle_async_request", counting)
    local = [c async for c in runtime.backend.stream("calc")]
    assert paths == []  # no request at all: read from the subscription in this process

    over_sse = RemoteBackend("http://helix.local", transport=NamespaceTransport(runtime.ns))
    try:
        sse_chunks = [c async for c in over_sse.stream("calc")]
    finally:
        await over_sse.aclose()
    assert paths == ["/sessions/calc/sse"]
    assert local == sse_chunks
    assert [c["sequence"] for c in local] == list(range(1, len(local) + 1))
    assert all(type(c) is dict for c in local)
    assert {"tool_start", "tool_end", "checkpoint", "run_completed"} <= {c["type"] for c in local}


async def test_local_chunks_belong_to_the_caller(make_runtime: Any) -> None:
    # Two followers of one live run are handed the same chunks by the runtime; whatever
    # one does to its chunks reaches neither the other nor the session.
    runtime = _calculator_runtime(make_runtime)
    backend = runtime.backend
    careless, careful = backend.stream("own", follow=True), backend.stream("own", follow=True)

    async def read(stream: Any, scribble: bool) -> list[dict[str, Any]]:
        got = []
        async for c in stream:
            if scribble:
                for value in c.values():
                    if isinstance(value, dict):
                        value["scribbled"] = True
                c["thinking"] = c["delta"] = "scribbled"
            got.append(c)
            if c["type"] == "run_completed":
                await stream.aclose()
                return got
        return got

    readers = [asyncio.ensure_future(read(careless, True)),
               asyncio.ensure_future(read(careful, False))]
    await asyncio.sleep(0)  # both are following before the run starts
    await backend.start("calculator", "What is 2 + 3?", session_id="own")
    scribbled, kept = await asyncio.wait_for(asyncio.gather(*readers), timeout=60)
    assert len(scribbled) == len(kept)
    stored = [c async for c in backend.stream("own")]
    assert kept == stored
    [start] = [c for c in kept if c["type"] == "tool_start"]
    assert start["input"] == {"a": 2, "b": 3}
    tool_uses = [block for m in await backend.handle("own").messages()
                 if isinstance(m["content"], list) for block in m["content"]
                 if block.get("type") == "tool_use"]
    assert [block["input"] for block in tool_uses] == [{"a": 2, "b": 3}]


async def test_a_local_stream_of_no_session_is_empty_and_leaves_nothing(
        make_runtime: Any) -> None:
    import pytest

    from helix_lab.errors import BadRequestError

    runtime = _calculator_runtime(make_runtime)
    assert [c async for c in runtime.backend.stream("nobody")] == []
    assert runtime.ns.stored_ids() == []
    with pytest.raises(BadRequestError) as caught:
        [c async for c in runtime.backend.stream("no/such id")]
    assert caught.value.status == 400 and caught.value.details["field"] == "sessionId"


async def test_a_model_that_never_awaits_does_not_hold_the_loop(make_runtime: Any) -> None:
    from helix_lab import Agent
    from helix_lab.llm import ScriptedLLM, Turn
    from helix_lab.runtime.stream import MAX_BATCH

    words = [f"w{i} " for i in range(3 * MAX_BATCH)]
    runtime = make_runtime([Agent(name="talker", register=False)],
                           ScriptedLLM([Turn(text="".join(words))]))
    seen_mid_stream: list[int] = []
    handle = await runtime.backend.start("talker", "talk", session_id="hog")
    server = runtime.server("hog")

    async def ticker() -> None:  # another session's work, or another client
        while server.is_executing:
            seen_mid_stream.append(server.stream.sequence)
            await asyncio.sleep(0)

    tick = asyncio.ensure_future(ticker())
    deltas = [c async for c in handle.stream() if c["type"] == "text_delta"]
    await asyncio.wait_for(tick, timeout=60)
    assert "".join(c["delta"] for c in deltas) == "".join(words)
    first, last = deltas[0]["sequence"], deltas[-1]["sequence"]
    # The other task ran while the model was in the middle of its answer.
    assert any(first <= s < last for s in seen_mid_stream), (first, last, seen_mid_stream[-5:])
