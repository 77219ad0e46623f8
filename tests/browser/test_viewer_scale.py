"""A long session in AgentView in real Chromium: it opens at its tail with a bounded number
of transcript items, pages older ones in on demand, folds its checkpoints in the tree,
and the page's JS heap is measured against a short session's (``viewer-heap.json`` in the
artifacts dir; ``benchmarks/viewer_heap.py`` runs this test at 10,000 steps for figure 12).

``HELIX_VIEWER_STEPS`` sets the long session's steps (default 400: ~4,000 chunks, enough
to open at the tail); ``HELIX_VIEWER_HEAP_ARTIFACT`` moves the JSON. No figure is asserted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .lab import cell_output_locator, open_notebook, run_cell, screenshot, wait_for_output

pytestmark = pytest.mark.browser

STEPS = int(os.environ.get("HELIX_VIEWER_STEPS", "400"))

BUILD = '''\
import asyncio
from helix_lab import Agent, AgentRegistry, LocalBackend, ToolContext, create_agent_server, tool
from helix_lab.llm import ScriptedLLM, Turn, call
from helix_lab.runtime import LocalNamespace

@tool
def echo(i: int, ctx: ToolContext) -> int:
    """Echo a number."""
    return i

registry = AgentRegistry()
registry.register(Agent(name="bench", tools=[echo], max_steps=100_000, register=False))

def model(steps):
    made = [0]
    def turn(_request):
        if made[0] < steps:
            made[0] += 1
            return Turn(text=f"Step {made[0]} looks at otters. ",
                        tool_calls=[call("echo", i=made[0])], usage={"input_tokens": 1,
                                                                     "output_tokens": 1})
        return Turn(text="done", usage={"input_tokens": 1, "output_tokens": 1})
    return ScriptedLLM([turn], loop=True, keep_requests=0)

def backend(steps):
    server = create_agent_server(llm_adapter=lambda env, ctx: model(steps), agents=registry)
    return LocalBackend(LocalNamespace(server, storage="scale-storage"))
'''

MAKE = BUILD + '''
for name, steps in (("short", 10), ("long", __STEPS__)):
    b = backend(steps)
    handle = await b.start("bench", "go", session_id=name)
    print(name, await handle.result(), (await handle.status())["lastSequence"])
    await b.aclose()
'''

OPEN = BUILD + '''
from helix_lab.widgets import AgentView
view = AgentView(backend(0).handle("__NAME__", "bench"))
view.follow()
view
'''


def _heap(page) -> int:
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    return int(cdp.send("Runtime.getHeapUsage")["usedSize"])


def _open(page, server, make_notebook, name: str, chunks: int) -> dict[str, float]:
    path = make_notebook(f"open-{name}.ipynb", [OPEN.replace("__NAME__", name)])
    open_notebook(page, server, path)
    before = _heap(page)
    run_cell(page, 0)
    view = cell_output_locator(page, 0).locator(".helix-agent-view")
    expect(view.locator(".hx-badge")).to_have_text("completed", timeout=60_000)
    expect(view).to_contain_text(f"{chunks:,} chunks", timeout=60_000)
    expect(view.locator(".hx-stream")).to_contain_text("done", timeout=60_000)
    view.get_by_role("tab", name="Checkpoints").click()
    expect(view.locator(".hx-tree-row")).to_have_count(1, timeout=30_000)
    page.wait_for_timeout(500)  # let the last comm messages land
    return {"before": before, "after": _heap(page),
            "items": view.locator(".hx-items > *").count()}


def test_a_long_session_opens_bounded_and_pages_in(jupyter_server, make_notebook, page,
                                                   artifacts) -> None:
    path = make_notebook("make.ipynb", [MAKE.replace("__STEPS__", str(STEPS))])
    open_notebook(page, jupyter_server, path)
    run_cell(page, 0, timeout=1_800_000)
    out = wait_for_output(page, 0, "long done", timeout=60_000).inner_text()
    last = {line.split()[0]: int(line.split()[-1]) for line in out.splitlines()
            if line.startswith(("short", "long"))}
    jupyter_server.shutdown_all_kernels()

    short = _open(page, jupyter_server, make_notebook, "short", last["short"])
    long_page = page.context.new_page()
    long = _open(long_page, jupyter_server, make_notebook, "long", last["long"])

    view = cell_output_locator(long_page, 0).locator(".helix-agent-view")
    # The long session: the tail only, a bounded number of items, and the tree folded.
    assert long["items"] <= 300, long
    assert short["items"] < long["items"]
    row = view.locator(".hx-tree-row")
    expect(row.locator(".hx-node")).to_have_count(30)  # one page of the branch
    expect(row.locator(".hx-fold")).to_have_text("◀")  # earlier checkpoints, on demand
    view.get_by_role("tab", name="Stream").click()
    earlier = view.locator(".hx-earlier")
    expect(earlier).to_be_visible()
    items = view.locator(".hx-items > *")
    expect(items.first).not_to_contain_text("Step 1 looks")
    screenshot(long_page, "viewer-scale-1-long-session")
    earlier.click()
    expect(items).not_to_have_count(long["items"], timeout=30_000)  # a page came in
    assert items.count() > long["items"]
    screenshot(long_page, "viewer-scale-2-earlier-page")
    long_page.close()

    figures = {"steps": STEPS, "chunks": last, "short": short, "long": long,
               "ratio": long["after"] / short["after"]}
    target = Path(os.environ.get("HELIX_VIEWER_HEAP_ARTIFACT",
                                 str(artifacts / "viewer-heap.json")))
    target.write_text(json.dumps(figures, indent=1))
    print(f"\nJS heap after opening: long {long['after'] / 2**20:.1f} MiB, short "
          f"{short['after'] / 2**20:.1f} MiB, ratio {figures['ratio']:.2f}")
