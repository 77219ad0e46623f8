"""``AgentView`` through its Python model, with no kernel and no browser.

An autouse fixture replaces ipywidgets' comm factory with a recording dummy comm, so the
tests see exactly what would go to the front end: every ``update`` message with its state.
That is how the coalescing bound is measured. The controls are tested on fed chunks and on
a real :class:`~helix_lab.client.LocalBackend` over sqlite files with a scripted model.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from typing import Any

import pydantic
import pytest
from dummy_comm import (
    Chunks,
    CommRecorder,
    custom_messages,
    front_end_state,
    transcript_text,
)
from helpers import eventually

from helix_lab import Agent, ToolContext, tool
from helix_lab.llm import ScriptedLLM, Turn, call
from helix_lab.widgets import AgentView, ViewState, allowed_actions
from helix_lab.widgets.render import (
    render_diff,
    render_header,
    render_state,
    render_stream,
    render_timeline,
)
from helix_lab.widgets.transcript_feed import TEXT_LIMIT
from helix_lab.widgets.view_state import RENDER_ITEMS

pytestmark = pytest.mark.usefixtures("comms")  # the recording comm, from conftest.py


# -- agents and chunks --------------------------------------------------------------------


class Counter(pydantic.BaseModel):
    count: int = 0
    note: str = ""


@tool
def bump(ctx: ToolContext) -> str:
    """Add one to the counter."""
    ctx.update_state(lambda s: setattr(s, "count", s.count + 1))
    return f"count is {ctx.get_state().count}"


def tool_results(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if isinstance(m.get("content"), list)
               for block in m["content"] if block.get("type") == "tool_result")


def counting_model(steps: int, delay: float = 0.15) -> ScriptedLLM:
    """``steps`` tool steps, then an answer. The turn depends on how many tool results the
    request carries, so a step that is cut and rerun (interrupt, resume, fork) still gets
    the right turn."""

    def turn(request: Any) -> Turn:
        done = tool_results(request.messages)
        if done < steps:
            return Turn(text=f"step {done + 1} ", tool_calls=[call("bump")], delay=delay)
        return Turn(text="all done", delay=0.01)

    return ScriptedLLM([turn], loop=True)


def make_agent() -> Agent:
    return Agent(name="counter", tools=[bump], state_schema=Counter, register=False)


@pytest.fixture
def runtime(make_runtime: Any) -> Any:
    """A real LocalBackend on sqlite files under tmp_path, with a slow counting model."""
    return make_runtime([make_agent()], counting_model(4))


@pytest.fixture
def new_view(runtime: Any, views: list[AgentView]) -> Any:
    def make(session_id: str = "s1", agent_type: str = "counter", *, handle: Any = None,
             min_interval: float = 0.02) -> AgentView:
        view = AgentView(handle or runtime.backend.handle(session_id, agent_type),
                         min_interval=min_interval)
        views.append(view)
        return view

    return make


async def settle(view: AgentView) -> None:
    """Wait until the coalescing timer has redrawn what the view has received (the
    deadline only catches a timer that never fires)."""
    await eventually(lambda: not view.redraw_pending, timeout=60)


def enabled(view: AgentView) -> set[str]:
    return {name for name, button in view.buttons.items() if not button.disabled}


def front_end_enabled(view: AgentView) -> set[str]:
    return {name for name, button in view.buttons.items()
            if not front_end_state(button)["disabled"]}


# -- buttons per status -------------------------------------------------------------------


@pytest.mark.parametrize(("status", "actions"), [
    ("starting", set()),
    ("idle", set()),
    ("running", {"interrupt", "abort"}),
    ("interrupted", {"resume", "retry", "abort"}),
    ("paused", {"interrupt", "abort"}),
    ("completed", {"retry"}),
    ("failed", {"retry"}),
])
def test_allowed_actions_per_status(status: str, actions: set[str]) -> None:
    assert allowed_actions(status) == actions


async def test_buttons_follow_the_status_chunks(new_view: Any) -> None:
    view = new_view()
    chunk = Chunks()
    assert view.state.status == "starting"
    assert enabled(view) == set() and front_end_enabled(view) == set()
    steps = [
        ("run_started", {}, "running", {"interrupt", "abort"}),
        ("run_interrupted", {"reason": "user"}, "interrupted", {"resume", "retry", "abort"}),
        ("run_resumed", {}, "running", {"interrupt", "abort"}),
        ("run_completed", {"output": "ok"}, "completed", {"retry"}),
        ("run_started", {}, "running", {"interrupt", "abort"}),
        ("run_failed", {"error": "boom"}, "failed", {"retry"}),
    ]
    for kind, fields, status, actions in steps:
        view.receive(chunk(kind, **fields))
        await settle(view)
        assert view.state.status == status, kind
        assert view.enabled_actions() == actions, kind
        assert enabled(view) == actions, kind
        assert front_end_enabled(view) == actions, kind  # what the browser was told
        assert f">{status}</span>" in front_end_state(view.header)["value"]


async def test_a_button_pressed_in_the_wrong_status_explains_itself(new_view: Any) -> None:
    view = new_view()
    view.receive(Chunks()("run_started"))
    await settle(view)
    assert view.press("resume") is None
    assert "Resume is not available while the session is running" in view.message.value
    assert "not available" in front_end_state(view.message)["value"]


# -- coalescing -----------------------------------------------------------------------------


async def test_a_received_chunk_is_drawn_by_the_next_scheduled_redraw(new_view: Any) -> None:
    view = new_view(min_interval=0.05)
    chunk = Chunks()
    assert not view.redraw_pending
    before = view.flushes
    view.receive(chunk("run_started"))
    view.receive(chunk("text_delta", delta="otters "))
    assert view.redraw_pending and view.flushes == before  # coalesced, not drawn yet
    await settle(view)
    assert view.flushes == before + 1
    assert "otters" in transcript_text(view.transcript)


async def test_ten_thousand_deltas_as_fast_as_possible_cost_a_handful_of_messages(
        comms: CommRecorder, new_view: Any) -> None:
    view = new_view(min_interval=0.1)
    chunk = Chunks()
    view.receive(chunk("run_started"))
    await settle(view)
    start = time.monotonic()
    before = view.flushes
    deltas = [f"w{i} " for i in range(10_000)]
    for i, delta in enumerate(deltas):
        view.receive(chunk("text_delta", delta=delta))
        if i % 10 == 0:
            await asyncio.sleep(0)  # the loop runs, so the flush timer can fire mid-burst
    fed = time.monotonic() - start
    await settle(view)
    elapsed = time.monotonic() - start
    updates = comms.updates(since=start)
    print(f"\ncoalescing: burst of 10,000 chunks fed in {fed:.2f} s -> {len(updates)} comm "
          f"updates, {view.flushes - before} redraws")

    # At most one redraw per 100 ms (plus the one that may start the burst), each a
    # couple of messages (stream and header), instead of one per chunk.
    redraws = view.flushes - before
    assert 1 <= redraws <= elapsed / 0.1 + 2, (redraws, elapsed)
    assert len(updates) <= 2 * (elapsed / 0.1 + 2), (len(updates), elapsed, fed)
    assert len(updates) < 100
    for message in updates:  # no 100 ms window holds more than two redraws
        window = [m for m in updates if message.at <= m.at < message.at + 0.1]
        assert len(window) <= 4, len(window)

    text = "".join(deltas)
    assert view.state.items[-1].text == text  # the kernel has it all; the front end is
    # sent the newest TEXT_LIMIT characters of one item at once, then every delta after.
    assert transcript_text(view.transcript).endswith(text[-TEXT_LIMIT:])
    # The transcript went as deltas: all the messages together carry the text about once,
    # where redrawing the whole stream would have sent it again at every redraw.
    total = sum(len(json.dumps(m)) for m in custom_messages(view.transcript))
    assert total < 1.2 * len(text) + 2_000, (total, len(text), redraws)
    assert "10,001 chunks" in front_end_state(view.header)["value"]


async def test_at_ten_thousand_chunks_a_second_the_message_rate_is_bounded(
        comms: CommRecorder, new_view: Any) -> None:
    view = new_view(min_interval=0.1)
    chunk = Chunks()
    start = time.monotonic()
    sent = 0
    deltas = []
    while sent < 10_000:  # 100 chunks every 10 ms: 10,000 chunks per second, for 1 s
        for _ in range(100):
            deltas.append(f"d{sent} ")
            view.receive(chunk("text_delta", delta=deltas[-1]))
            sent += 1
        target = start + sent / 10_000
        await asyncio.sleep(max(0.0, target - time.monotonic()))
    await settle(view)
    elapsed = time.monotonic() - start
    updates = comms.updates(since=start)
    rate = len(updates) / elapsed
    print(f"\ncoalescing: 10,000 chunks in {elapsed:.2f} s -> {len(updates)} comm updates "
          f"({rate:.1f}/s, {view.flushes} redraws)")
    # Paced at 10,000 a second at most, so at least ~1 s; a slow machine may take longer,
    # and the bounds below are per second of whatever it took.
    assert elapsed > 0.9
    assert rate <= 2 * (1 / 0.1) + 5, rate  # two messages per redraw, ten redraws a second
    assert view.flushes <= elapsed / 0.1 + 2
    assert "".join(deltas) in transcript_text(view.transcript)


async def test_flush_redraws_at_once_and_stop_keeps_the_drawing(
        runtime: Any, views: list[AgentView]) -> None:
    # A handle made without the agent type: the view learns it from the chunks.
    handle = await runtime.backend.start("counter", "count to four", session_id="own")
    view = AgentView(runtime.backend.handle("own"), min_interval=3600)
    views.append(view)
    assert view.handle.session_id == view.session_id == "own"
    assert view.backend is runtime.backend
    view.follow()
    assert view.following
    await eventually(lambda: view.state.status == "completed")
    assert view.state.agent_type == "counter"
    # An hour between redraws: only flush() draws what came in after the first redraw.
    view.flush()
    assert ">completed</span>" in front_end_state(view.header)["value"]
    assert "all done" in transcript_text(view.transcript)
    drawn = transcript_text(view.transcript)

    seen = view.state.last_sequence
    view.stop()
    assert not view.following
    again = await handle.send("count again")
    assert await again.result() == "all done"
    assert view.state.last_sequence == seen  # a stopped view takes no more chunks...
    assert transcript_text(view.transcript) == drawn  # ...and keeps its drawing
    assert repr(view).startswith("AgentView(agent='counter', session='own', status='completed'")


# -- the text/plain repr ------------------------------------------------------------------


async def test_the_text_repr_is_a_stable_summary(new_view: Any) -> None:
    view = new_view("s1", "researcher")
    assert repr(view) == "AgentView(agent='researcher', session='s1', status='starting', steps=0)"
    long_answer = "Sea otters use stones as tools to crack shellfish open, " * 3
    chunk = Chunks()
    for c in [chunk("run_started", step=0), chunk("step_started", step=1),
              chunk("text_delta", step=1, delta="thinking"),
              chunk("checkpoint", step=1, checkpointId="cpv1-s1-s1-t1700000000000-abcdef"),
              chunk("run_completed", step=1, output=long_answer)]:
        view.receive(c)
    await settle(view)
    expected = ("AgentView(agent='researcher', session='s1', status='completed', steps=1, "
                "output='Sea otters use stones as tools to crack shellfish open, Sea…')")
    assert repr(view) == expected
    plain = view._repr_mimebundle_()["text/plain"]
    assert plain == expected
    assert "0x" not in plain and not re.search(r"\d{6,}", plain)  # no address, no timestamp

    # The same chunks at other times, in another view, give the same summary.
    other = new_view("s1", "researcher")
    for c in [chunk("run_started", step=0), chunk("step_started", step=1),
              chunk("checkpoint", step=1, checkpointId="cpv1-s1-s1-t1800000000000-123456"),
              chunk("run_completed", step=1, output=long_answer)]:
        c["timestamp"] += 10**9
        other.receive(c)
    assert repr(other) == expected


def test_a_failed_summary_names_the_error() -> None:
    state = ViewState("a", "s")
    state.apply({"type": "run_started", "sequence": 1, "step": 0})
    state.apply({"type": "run_failed", "sequence": 2, "step": 1, "error": "model unreachable"})
    assert state.summary() == ("AgentView(agent='a', session='s', status='failed', steps=0, "
                               "error='model unreachable')")


# -- rendering ------------------------------------------------------------------------------


def test_rendering_escapes_everything_from_the_model_and_tools() -> None:
    state = ViewState("<b>agent</b>", "<i>session</i>")
    chunk = Chunks()
    for c in [
        chunk("run_started"),
        chunk("text_delta", delta="<img src=x onerror=alert(1)>"),
        chunk("thinking", delta="<iframe src=evil>"),
        chunk("tool_start", toolCallId="t1", toolName="<svg onload=x>",
              input={"q": "<script>alert('in')</script>"}),
        chunk("tool_end", toolCallId="t1", output="<script>alert('out')</script>"),
        chunk("custom", name="<marquee>", data={"html": "<style>body{}</style>"}),
        chunk("run_failed", error="<script>alert('error')</script>"),
    ]:
        state.apply(c)
    html = render_stream(state) + render_header(state, "<backend>") + render_timeline(state)
    for raw in ("<script", "<img", "<iframe", "<svg", "<marquee", "<b>agent", "<i>session",
                "<backend>", "<style>body"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(&#x27;out&#x27;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;svg onload=x&gt;" in html

    evil = {"x": "<script>alert(1)</script>"}
    for html in (render_state(evil), render_diff({}, evil, "<old>", "<new>")):
        assert "<script" not in html and "&lt;script&gt;" in html
    assert "<old>" not in render_diff({}, evil, "<old>", "<new>")


def test_the_transcript_draws_at_most_render_items() -> None:
    state = ViewState("a", "s")
    chunk = Chunks()
    total = RENDER_ITEMS + 57
    for i in range(total):
        state.apply(chunk("tool_start", toolCallId=f"t{i}", toolName=f"tool_{i:04d}", input={}))
    assert len(state.items) == total  # every item is kept...
    html = render_stream(state)
    assert html.count('class="hx-tool"') == RENDER_ITEMS  # ...but only the newest are drawn
    assert "… 57 earlier items not drawn" in html
    assert f"tool_{total - 1:04d}" in html
    assert "tool_0056" not in html and "tool_0057" in html


def test_a_short_transcript_hides_nothing() -> None:
    state = ViewState("a", "s")
    state.apply({"type": "text_delta", "sequence": 1, "step": 1, "delta": "hello"})
    html = render_stream(state)
    assert "hello" in html and "earlier items" not in html


def test_apply_drops_a_sequence_it_has_seen() -> None:
    state = ViewState("a", "s")
    assert state.apply({"type": "run_started", "sequence": 1, "step": 0})
    assert state.apply({"type": "text_delta", "sequence": 2, "step": 1, "delta": "a"}) == {"stream"}
    assert state.apply({"type": "text_delta", "sequence": 2, "step": 1, "delta": "a"}) == set()
    assert state.apply({"type": "run_completed", "sequence": 1, "step": 1}) == set()
    assert state.apply({"type": "text_delta", "sequence": 3, "step": 1, "delta": "b"})
    assert [i.text for i in state.items] == ["ab"]
    assert (state.chunks, state.last_sequence, state.status) == (3, 3, "running")


# -- controls on a real backend -------------------------------------------------------------


async def wait_status(view: AgentView, status: str, timeout: float = 60.0) -> None:
    await eventually(lambda: view.state.status == status, timeout=timeout)
    await settle(view)


async def test_interrupt_then_resume_from_the_buttons(runtime: Any, new_view: Any) -> None:
    handle = await runtime.backend.start("counter", "count to four", session_id="live")
    view = new_view("live", handle=handle)
    view.follow()
    await wait_status(view, "running")
    assert enabled(view) == {"interrupt", "abort"}
    await eventually(lambda: view.state.step_count >= 1)

    task = view.press("interrupt")
    assert task is not None
    assert enabled(view) == set()  # every button waits while the request is in flight
    await task
    assert task.exception() is None
    assert "Interrupted at step" in view.message.value
    await wait_status(view, "interrupted")
    assert enabled(view) == {"resume", "retry", "abort"}
    assert front_end_enabled(view) == {"resume", "retry", "abort"}
    status = await handle.status()
    assert status["status"] == "interrupted" and status["canResume"]

    await view.press("resume")
    assert "Resumed." in view.message.value
    await wait_status(view, "completed")
    assert view.state.output == "all done"
    assert enabled(view) == {"retry"}
    assert (await view.handle.status())["status"] == "completed"
    assert (await view.handle.get_state())["count"] == 4


async def test_retry_from_a_checkpoint_with_an_edited_state_forks(
        runtime: Any, new_view: Any) -> None:
    handle = await runtime.backend.start("counter", "count to four", session_id="fork")
    view = new_view("fork", handle=handle)
    view.follow()
    await wait_status(view, "completed")
    await view.refresh_checkpoints()
    before = await handle.checkpoints()
    step2 = next(c for c in before if c["step"] == 2)
    assert all(c["branch"] == 0 for c in before)
    assert step2["checkpointId"] in {v for _, v in view.checkpoint_select.options}

    view.checkpoint_select.value = step2["checkpointId"]  # as a click in the browser would
    await eventually(lambda: view.state_editor.value.strip().startswith("{"))
    shown = json.loads(view.state_editor.value)
    assert shown == {"count": 2, "note": ""}
    view.state_editor.value = json.dumps({**shown, "note": "edited"})

    task = view.press("retry")
    await task
    assert task.exception() is None
    assert "Forked a new branch from step 2 with the edited state." in view.message.value
    assert view.handle.run_id != handle.run_id
    await wait_status(view, "completed")
    resumed = [i for i in view.state.items if i.kind == "info" and i.text.startswith("resumed")]
    assert resumed and resumed[-1].text.startswith("resumed (branch) from step 2, branch ")
    assert resumed[-1].data["checkpoint"] == step2["checkpointId"]

    after = await handle.checkpoints()
    forked = [c for c in after if c["branch"] != 0]
    assert forked, after
    first = forked[0]
    assert first["parentId"] == step2["checkpointId"]
    assert (await handle.checkpoint(first["checkpointId"]))["state"]["note"] == "edited"
    assert await view.handle.get_state() == {"count": 4, "note": "edited"}
    # The fork left the original branch as it was.
    assert (await handle.checkpoint(step2["checkpointId"]))["state"] == {"count": 2, "note": ""}
    status = await handle.status()
    assert status["branch"] == first["branch"] and status["status"] == "completed"


async def test_a_refused_action_is_a_message_not_an_exception(
        runtime: Any, new_view: Any) -> None:
    handle = await runtime.backend.start("counter", "count", session_id="done")
    await handle.result()
    # A view that believes the session is interrupted; the backend knows it completed.
    view = new_view("done")
    view.receive(Chunks()("run_interrupted", reason="stale"))
    await settle(view)
    assert "resume" in enabled(view)

    task = view.press("resume")
    await task
    assert task.exception() is None
    assert "Resume was refused" in view.message.value
    assert "cannot be resumed" in view.message.value
    assert "color:#c62828" in front_end_state(view.message)["value"]
    assert enabled(view) == {"resume", "retry", "abort"}  # usable again afterwards

    view.state_editor.value = "{not json"
    await view.refresh_checkpoints()
    view.checkpoint_select.value = view.checkpoint_select.options[0][1]
    await eventually(lambda: view.state_editor.value.startswith("{\n"))
    view.state_editor.value = "{not json"
    await view.press("retry")
    assert "not valid JSON" in view.message.value

    await view.show_checkpoint("cpv1-done-s9-t1-000000")
    assert "Could not load the checkpoint" in view.message.value


async def test_show_checkpoint_renders_a_diff(runtime: Any, new_view: Any) -> None:
    handle = await runtime.backend.start("counter", "count", session_id="diff")
    await handle.result()
    view = new_view("diff", handle=handle)
    checkpoints = await handle.checkpoints()
    step1 = next(c for c in checkpoints if c["step"] == 1)["checkpointId"]
    step3 = next(c for c in checkpoints if c["step"] == 3)["checkpointId"]

    await view.show_checkpoint(step1, step3)
    diff = view.checkpoint_diff.value
    assert "--- step 1 (branch 0)" in diff and "+++ step 3 (branch 0)" in diff
    assert "- &quot;count&quot;: 1," in diff and "+ &quot;count&quot;: 3," in diff
    assert "&quot;count&quot;: 1" in view.checkpoint_state.value
    assert json.loads(view.state_editor.value) == {"count": 1, "note": ""}

    await view.show_checkpoint(step1)  # against the latest state
    assert "+++ latest" in view.checkpoint_diff.value
    assert "+ &quot;count&quot;: 4," in view.checkpoint_diff.value

    await view.show_checkpoint(step3, step3)
    assert "no difference in state" in view.checkpoint_diff.value


async def test_clicks_and_selections_from_a_subshell_thread_run_on_the_views_loop(
        runtime: Any, new_view: Any) -> None:
    """ipykernel 7 may deliver comm messages on a subshell thread, with its own loop; the
    session's storage and stream belong to the kernel's loop, so the view hands over."""
    handle = await runtime.backend.start("counter", "count", session_id="sub")
    view = new_view("sub", handle=handle)
    view.follow()
    await wait_status(view, "running")
    await eventually(lambda: view.state.step_count >= 1)
    threads: list[str] = []

    def on_subshell(event: Any) -> None:
        async def handle_comm_message() -> None:
            threads.append(threading.current_thread().name)
            event()

        asyncio.run(handle_comm_message())

    await asyncio.to_thread(on_subshell, view.buttons["interrupt"].click)
    assert threads and threads[0] != threading.current_thread().name
    await wait_status(view, "interrupted")
    assert "Interrupted at step" in view.message.value  # not "refused"
    assert enabled(view) == {"resume", "retry", "abort"}

    await view.refresh_checkpoints()
    step1 = next(c for c in await handle.checkpoints() if c["step"] == 1)

    def select() -> None:
        view.checkpoint_select.value = step1["checkpointId"]

    await asyncio.to_thread(on_subshell, select)
    await eventually(lambda: view.state_editor.value.startswith("{"))
    assert json.loads(view.state_editor.value) == {"count": 1, "note": ""}
    assert "Could not load" not in view.message.value

    await asyncio.to_thread(on_subshell, view.buttons["resume"].click)
    await wait_status(view, "completed")
    assert (await view.handle.get_state())["count"] == 4
