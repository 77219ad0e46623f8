"""The AgentView in real JupyterLab: live streaming, Interrupt / Resume, and a fork from the
checkpoint browser, clicked like a user would, on a slow scripted agent.

Screenshots of each stage go to the artifacts dir: ``agent-view-1-live-stream.png`` to
``agent-view-5-forked.png``.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

import pytest
from notebook_agents import PARTS
from playwright.sync_api import expect

from .lab import run_agent_notebook, screenshot, visible_dialogs

pytestmark = pytest.mark.browser

GATE = Path(tempfile.gettempdir()) / f"helix-agent-view-gate-{secrets.token_hex(4)}"

SLOW_AGENT = "import os" + PARTS + '''
slow = Agent(name="slow", tools=[work], state_schema=Progress)

def next_turn(request):
    done = len(tool_results(request))
    # Until the test creates the gate file (after its interrupt), the model waits before
    # step 4 until Interrupt cuts the wait: the run is still going when the test presses
    # it, however slow the machine is.
    wait = 3600 if done == 3 and not os.path.exists(GATE) else 0
    if done < 6:
        return Turn(text=f"Step {done + 1}: working through part {done + 1} of six, "
                         "slowly and carefully. ",
                    tool_calls=[call("work", part=done + 1)], chunk_delay=0.15, delay=wait)
    return Turn(text="All six parts are done.", chunk_delay=0.05)

script = ScriptedLLM([next_turn], loop=True)
%helix llm scripted script
'''.replace("GATE", repr(str(GATE)))

def show(locator) -> None:
    """Scroll the notebook so that ``locator`` starts at the top of the viewport."""
    locator.evaluate("el => el.scrollIntoView({block: 'start'})")


def option_labels(select) -> list[str]:
    """The options of a Select, as text (ipywidgets draws their spaces as no-break spaces)."""
    return [text.replace("\xa0", " ") for text in select.locator("option").all_inner_texts()]


RUN_CELL = "%%helix_agent slow --session b1\nWork through the six parts, please."


def test_agent_view_streams_interrupts_resumes_and_forks(jupyter_server, page,
                                                         artifacts) -> None:
    t0 = time.monotonic()
    view = run_agent_notebook(page, jupyter_server, "agent_view.ipynb", SLOW_AGENT, RUN_CELL)
    badge = view.locator(".hx-badge")
    stream = view.locator(".hx-stream")
    message = view.locator(".widget-html").nth(1)  # header, then the message line
    button = {name: view.get_by_role("button", name=name)  # the name starts with an icon
              for name in ("Interrupt", "Resume", "Retry from checkpoint", "Abort")}

    # -- live stream: text arrives while the run goes on, and keeps growing ------------
    expect(stream).to_contain_text("Step 1: working", timeout=60_000)
    expect(badge).to_have_text("running")
    expect(button["Interrupt"]).to_be_enabled()
    expect(button["Resume"]).to_be_disabled()
    seen = len(stream.inner_text())
    show(view)
    screenshot(page, "agent-view-1-live-stream")
    # Each redraw replaces the stream's element, so poll through the locator.
    deadline = time.monotonic() + 60  # only a hang takes this long
    while len(stream.inner_text()) < seen + 40:
        assert time.monotonic() < deadline, f"the stream stopped growing at {seen} characters"
        page.wait_for_timeout(100)
    expect(stream).to_contain_text("Step 2: working", timeout=60_000)
    assert "Step 6" not in stream.inner_text()

    # -- Interrupt ----------------------------------------------------------------------
    button["Interrupt"].click()
    expect(badge).to_have_text("interrupted", timeout=60_000)
    expect(message).to_contain_text("Interrupted at step")
    expect(stream).to_contain_text("interrupted: user pressed Interrupt")
    expect(button["Resume"]).to_be_enabled()
    expect(button["Interrupt"]).to_be_disabled()
    screenshot(page, "agent-view-2-interrupted")

    # -- Resume, to the end ----------------------------------------------------------------
    GATE.touch()  # from now on the model does not wait
    button["Resume"].click()
    expect(message).to_contain_text("Resumed.")
    expect(badge).to_have_text("completed", timeout=60_000)
    expect(stream).to_contain_text("All six parts are done.")
    show(view)
    # The stream box is taller than its 420 px; the newest text is the part in sight.
    expect(stream.get_by_text("All six parts are done.")).to_be_in_viewport()
    expect(stream.get_by_text("Step 1: working")).not_to_be_in_viewport()
    expect(view).to_contain_text("7 steps")  # six tool steps and the answer
    expect(button["Retry from checkpoint"]).to_be_enabled()
    screenshot(page, "agent-view-3-completed")

    # -- the checkpoint browser: pick step 1 -----------------------------------------------
    view.get_by_role("tab", name="Checkpoints").click()
    select = view.locator(".hx-checkpoint-select select")
    expect(select).to_be_visible()
    labels = option_labels(select)
    assert any(label.startswith("step 7") and "completed" in label for label in labels), labels
    step1 = next(i for i, label in enumerate(labels) if label.startswith("step 1"))
    select.select_option(index=step1)
    expect(view).to_contain_text("--- step 1 (branch 0)", timeout=60_000)
    expect(view).to_contain_text("+++ latest")
    expect(view).to_contain_text('+   6')  # the latest state has all six parts
    editor = view.locator(".widget-textarea textarea")
    expect(editor).to_have_value('{\n "parts_done": [\n  1\n ]\n}')
    show(view)
    screenshot(page, "agent-view-4-checkpoints")

    # -- Retry from checkpoint: a new branch, run to the end -------------------------------
    button["Retry from checkpoint"].click()
    expect(message).to_contain_text("Forked a new branch from step 1", timeout=60_000)
    expect(badge).to_have_text("running", timeout=60_000)
    expect(badge).to_have_text("completed", timeout=60_000)
    expect(select.locator("option", has_text="branch 1").first).to_be_attached(timeout=60_000)
    branch1 = [label for label in option_labels(select) if "branch 1" in label]
    assert any(label.startswith("step 7") and "completed" in label for label in branch1), branch1
    view.get_by_role("tab", name="Stream").click()
    expect(stream).to_contain_text("resumed (branch) from step 1, branch 1")
    show(view)
    expect(stream.get_by_text("All six parts are done.").last).to_be_in_viewport()
    screenshot(page, "agent-view-5-forked")

    assert visible_dialogs(page) == []
    for n, stage in enumerate(("live-stream", "interrupted", "completed", "checkpoints",
                               "forked"), start=1):
        assert (artifacts / f"agent-view-{n}-{stage}.png").stat().st_size > 10_000
    print(f"\nagent view browser test body: {time.monotonic() - t0:.1f}s")
