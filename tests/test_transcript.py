"""The transcript at scale: deltas over the comm, a bounded window, opening at the tail and
paging back, through a recording dummy comm and a real LocalBackend on sqlite files.
The drawing is tested in Chromium (``tests/browser/test_viewer.py``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from dummy_comm import (
    Chunks,
    custom_messages,
    from_front_end,
    transcript_text,
)
from helpers import eventually

from helix_lab import Agent
from helix_lab.llm import ScriptedLLM, Turn
from helix_lab.widgets import AgentView
from helix_lab.widgets.agent_view import KEEP_ITEMS, OPEN_CHUNKS
from helix_lab.widgets.render import render_stream
from helix_lab.widgets.transcript import WINDOW
from helix_lab.widgets.transcript_feed import EARLIER_PAGE
from helix_lab.widgets.view_state import RENDER_ITEMS

pytestmark = pytest.mark.usefixtures("comms")  # the recording comm, from conftest.py


@pytest.fixture
def runtime(make_runtime: Any) -> Any:
    """A talker whose one step streams 5,000 words, one delta each."""
    words = " ".join(f"word{i}" for i in range(5_000))
    return make_runtime([Agent(name="talker", max_steps=2, register=False)],
                        ScriptedLLM([Turn(text=words)], loop=True))


def ops_of(view: AgentView) -> list[dict[str, Any]]:
    return [op for m in custom_messages(view.transcript) for op in m.get("ops", [])]


async def test_redraws_send_what_changed_whatever_the_sequence(runtime: Any,
                                                               views: list[AgentView]) -> None:
    """The same burst costs the same bytes at sequence 100 as at sequence 100,000."""
    sizes = []
    for start in (100, 100_000):
        view = AgentView(runtime.backend.handle(f"s{start}", "talker"), min_interval=3600)
        views.append(view)
        chunk = Chunks(start, "talker")
        view.state.last_sequence = start  # as if opened at the tail of a long session
        for i in range(start // 100):  # history before the burst: long text, tools
            view.receive(chunk("text_delta", step=i, delta="x" * 50))
            view.receive(chunk("tool_start", step=i, toolName="t", toolCallId=f"c{i}",
                               input={"i": i}))
            view.receive(chunk("tool_end", step=i, toolCallId=f"c{i}", output=i))
        view.flush()
        sent = len(custom_messages(view.transcript))
        for i in range(200):
            view.receive(chunk("text_delta", step=10_000, delta=f"d{i} "))
        view.flush()
        burst = custom_messages(view.transcript)[sent:]
        assert [op["op"] for m in burst for op in m["ops"]] == ["add"]
        sizes.append(len(json.dumps(burst)))
        assert "d0 d1 " in transcript_text(view.transcript)
        assert transcript_text(view.transcript).endswith("d199 ")
    assert abs(sizes[0] - sizes[1]) <= 8, sizes  # only the item id has more digits

    # Appending to the text that is still streaming sends only the new text.
    view.receive(chunk("text_delta", step=10_000, delta="tail"))
    view.flush()
    assert custom_messages(view.transcript)[-1] == {
        "type": "ops", "ops": [{"op": "append", "id": ops_of(view)[-2]["id"], "text": "tail"}]}


async def test_a_tool_that_finishes_is_set_again_and_the_window_is_bounded(
        runtime: Any, views: list[AgentView]) -> None:
    view = AgentView(runtime.backend.handle("w", "talker"), min_interval=3600)
    views.append(view)
    chunk = Chunks(agent_type="talker")
    view.receive(chunk("tool_start", toolName="search", toolCallId="t0", input={"q": "otters"}))
    view.flush()
    view.receive(chunk("tool_end", toolCallId="t0", output="found 3 otters"))
    view.flush()
    add, set_ = ops_of(view)
    assert add["op"] == "add" and "…running" in add["html"]
    assert set_["op"] == "set" and set_["id"] == add["id"] and "found 3 otters" in set_["html"]

    for i in range(WINDOW * 3):
        view.receive(chunk("custom", name=f"note{i}", data=i))
        if i % 100 == 0:
            view.flush()
    view.flush()
    assert len(view.feed._window) == WINDOW  # what the kernel keeps for the front end
    assert view.transcript.has_earlier  # trimmed items can be paged back in
    assert view.transcript.window == WINDOW  # the front end trims the same ones


async def test_a_view_drawn_late_asks_for_the_window_and_gets_it(
        runtime: Any, views: list[AgentView]) -> None:
    view = AgentView(runtime.backend.handle("late", "talker"), min_interval=3600)
    views.append(view)
    chunk = Chunks(agent_type="talker")
    for i in range(5):
        view.receive(chunk("text_delta", step=i, delta=f"step {i} text "))
    view.receive(chunk("text_delta", step=4, delta="pending"))  # not flushed yet
    from_front_end(view.transcript, {"method": "custom", "content": {"type": "sync"}})
    reset = custom_messages(view.transcript)[-1]["ops"]
    assert [op["op"] for op in reset] == ["reset"]
    assert len(reset[0]["ids"]) == 5 and "step 4 text pending" in reset[0]["html"][-1]
    view.receive(chunk("text_delta", step=4, delta=" more"))
    view.flush()
    assert transcript_text(view.transcript).endswith("step 4 text pending more")


async def test_a_long_session_opens_at_its_tail_and_pages_back(
        runtime: Any, views: list[AgentView]) -> None:
    handle = await runtime.backend.start("talker", "talk", session_id="long")
    await handle.result()
    last = (await handle.status())["lastSequence"]
    assert last > OPEN_CHUNKS + EARLIER_PAGE

    view = AgentView(handle, min_interval=0.02)
    views.append(view)
    view.follow()
    await eventually(lambda: view.state.last_sequence == last and view.state.output)
    await asyncio.sleep(0.1)
    view.flush()
    assert view.state.status == "completed"
    assert view.state.chunks == last  # counted, though only the tail was read
    shown = transcript_text(view.transcript)
    assert "word4999" in shown and "word0 " not in shown
    assert view.transcript.has_earlier
    first = view.feed.first_sequence
    assert first == last - OPEN_CHUNKS

    from_front_end(view.transcript, {"method": "custom", "content": {"type": "earlier"}})
    await eventually(lambda: view.feed.first_sequence < first)
    [prepend] = [op for op in ops_of(view) if op["op"] == "prepend"]
    assert prepend["html"] and "word" in prepend["html"][0]
    assert view.feed.first_sequence == first - EARLIER_PAGE
    older = transcript_text(view.transcript)
    assert older.endswith(shown)  # the older page goes in front of what was drawn
    assert len(older) > len(shown)
    assert view.transcript.has_earlier


async def test_a_live_view_keeps_a_bounded_transcript_in_the_kernel(
        runtime: Any, views: list[AgentView]) -> None:
    view = AgentView(runtime.backend.handle("live", "talker"), min_interval=3600)
    views.append(view)
    chunk = Chunks()
    total = KEEP_ITEMS * 4
    for i in range(total):
        view.receive(chunk("custom", step=i, name=f"note{i}", data=i))
        if i % 500 == 0:
            view.flush()
    view.flush()
    assert KEEP_ITEMS <= len(view.state.items) <= KEEP_ITEMS * 5 // 4
    assert view.state.dropped_items + len(view.state.items) == total
    assert view.state.items[-1].text == f"note{total - 1}"
    assert f"… {total - RENDER_ITEMS} earlier items not drawn" in render_stream(view.state)
    assert transcript_text(view.transcript).endswith(f"note{total - 1}: {total - 1}")
