"""The client's stream: reconnects after a drop, drops repeats, and resyncs when the
server went back. Driven through a RemoteBackend on an httpx MockTransport, so each
reply of the 'server' is exactly what the test says."""

from __future__ import annotations

from typing import Any

import httpx

from helix_lab.client import RemoteBackend
from helix_lab.runtime.sse import encode_chunk, encode_end
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
