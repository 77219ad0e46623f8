"""``Subscription`` on a real SQLite stream: whatever the order of writes, flushes and reads,
and however far a reader falls behind, its batches hold every chunk once, in order (the
in-process client's own dedupe is not needed for that).

A subscription replays stored chunks, then takes live batches from memory; one that falls
more than ``MAX_BUFFER`` chunks behind drops its buffer and replays from storage again.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix_lab.runtime import stream as stream_module
from helix_lab.runtime.sql import SqliteStorage
from helix_lab.runtime.stream import DOStreamManager

_OPS = st.lists(st.tuples(st.sampled_from(["write", "delta", "flush", "read"]),
                          st.integers(1, 40)), max_size=25)


async def _follow(ops: list[tuple[str, int]], stored: int, start: int) -> list[int]:
    stream = DOStreamManager(SqliteStorage(":memory:"))
    for i in range(stored):  # before anyone listens: replayed from storage
        stream.write({"type": "text_delta", "delta": f"old{i} "}, step=1)
    stream.flush()
    batches = stream.subscribe(start, follow=True).__aiter__()
    delta = stream.delta_writer("run", 2)
    got: list[int] = []
    for op, n in ops:
        if op == "write":
            for i in range(n):
                stream.write({"type": "tool_end", "toolCallId": f"t{i}", "output": i}, step=2)
        elif op == "delta":
            for i in range(n):
                delta("text_delta", f"w{i} ")
        elif op == "flush":
            stream.flush()
        else:  # read at most n batches, while there is something to read
            for _ in range(n):
                if len(got) == stream.sequence - start:
                    break
                got += [c["sequence"] for c in await asyncio.wait_for(anext(batches), 60)]
    stream.flush()
    while len(got) < stream.sequence - start:
        got += [c["sequence"] for c in await asyncio.wait_for(anext(batches), 60)]
    await batches.aclose()
    return got


@settings(max_examples=150, deadline=None)
@given(ops=_OPS, stored=st.integers(0, 30), start=st.integers(0, 10),
       buffer=st.integers(1, 60))
def test_a_subscriber_gets_every_chunk_once_in_order(ops: list[tuple[str, int]], stored: int,
                                                      start: int, buffer: int) -> None:
    start = min(start, stored)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stream_module, "MAX_BUFFER", buffer)  # fall behind early and often
        got = asyncio.run(_follow(ops, stored, start))
    total = stored + sum(n for op, n in ops if op in ("write", "delta"))
    assert got == list(range(start + 1, total + 1))
