"""The time-travel viewer in real JupyterLab and Chromium: the branch tree's drawing, and the
tree and search inside ``AgentView`` on a session forked twice: a click on a node selects
its checkpoint, Retry forks from it, and a search hit jumps to its step.

Screenshots go to the artifacts dir as ``viewer-*.png``.
"""

from __future__ import annotations

import pytest
from notebook_agents import PARTS
from playwright.sync_api import expect

from .lab import cell_output_locator, open_notebook, run_cell, screenshot, wait_for_output

pytestmark = pytest.mark.browser

TREE_CELL = '''\
from helix_lab.widgets.branch_tree import BranchTree

def row(n, parent, fork_step, head_step, count, status):
    return {"branch": n, "parentBranch": parent,
            "forkCheckpointId": None if parent is None else f"cp-{parent}-{fork_step}",
            "forkStep": fork_step, "headCheckpointId": f"cp-{n}-{head_step}",
            "headStep": head_step, "headSequence": 100_000 * (n + 1),
            "checkpointCount": count, "status": status}

asked = []
tree = BranchTree(branches=[row(0, None, None, 9_999, 10_000, "completed"),
                            row(1, 0, 4_000, 4_010, 11, "interrupted"),
                            row(2, 1, 4_005, 4_020, 16, "running")], current_branch=2)
tree.on_page(asked.append)
tree
'''


def test_branch_tree_draws_folds_and_selects(jupyter_server, make_notebook, page) -> None:
    path = make_notebook("tree.ipynb", [TREE_CELL, "print('selected', tree.selected, asked)"])
    open_notebook(page, jupyter_server, path)
    run_cell(page, 0)
    tree = cell_output_locator(page, 0).locator(".hx-tree")
    expect(tree).to_be_visible(timeout=60_000)
    rows = tree.locator(".hx-tree-row")
    expect(rows).to_have_count(3)
    # Depth-first under the parent, indented by depth; the current branch is marked.
    assert [r.get_attribute("data-branch") for r in rows.all()] == ["0", "1", "2"]
    pads = [r.evaluate("el => parseFloat(getComputedStyle(el).paddingLeft)") for r in rows.all()]
    assert pads[0] < pads[1] < pads[2], pads
    expect(rows.nth(2)).to_have_class("hx-tree-row hx-current")
    # 10,000 checkpoints fold into one button and the head.
    expect(rows.nth(0).locator(".hx-fold")).to_have_text("⋯ 9,999")
    expect(rows.nth(0).locator(".hx-node")).to_have_text(["9999"])
    expect(rows.nth(1)).to_contain_text("└ from step4000branch 1interrupted")
    expect(rows.nth(1).locator(".hx-tree-status")).to_have_class(
        "hx-tree-status hx-s-interrupted")
    screenshot(page, "viewer-0-tree-drawing")

    rows.nth(1).locator(".hx-node", has_text="4010").click()
    expect(rows.nth(1).locator(".hx-node.hx-selected")).to_have_text("4010")
    rows.nth(0).locator(".hx-fold").click()
    run_cell(page, 1)
    wait_for_output(page, 1, "selected cp-1-4010 [{'branch': 0, 'before': 100001}]")


AGENT = "from helix_lab.widgets import AgentView" + PARTS + '''
parts = Agent(name="parts", tools=[work], state_schema=Progress)

def next_turn(request):
    done = len(tool_results(request))
    if done < 4:
        return Turn(text=f"Working on part {done + 1}. ", tool_calls=[call("work", part=done + 1)],
                    chunk_delay=0.01)
    return Turn(text="All four parts are done.")

script = ScriptedLLM([next_turn], loop=True)
%helix llm scripted script
'''

FORK_TWICE = '''\
first = _helix
cps = {(c["branch"], c["step"]): c["checkpointId"] for c in await first.checkpoints()}
one = await first.resume(mode="from_checkpoint", checkpoint_id=cps[0, 1])
await one.result()
cps = {(c["branch"], c["step"]): c["checkpointId"] for c in await first.checkpoints()}
two = await one.resume(mode="from_checkpoint", checkpoint_id=cps[1, 3])
print("forked twice:", await two.result())
view = AgentView(two)
view.follow()
view
'''


def test_tree_after_two_forks_click_fork_and_search(jupyter_server, make_notebook, page,
                                                   artifacts) -> None:
    path = make_notebook("viewer.ipynb", [
        "%load_ext helix_lab", AGENT, "%%helix_agent parts --session v1 --wait\nDo the parts.",
        FORK_TWICE])
    open_notebook(page, jupyter_server, path)
    run_cell(page, 0)
    run_cell(page, 1)
    wait_for_output(page, 1, "model: scripted (script)")
    run_cell(page, 2)
    wait_for_output(page, 2, "completed", timeout=60_000)
    run_cell(page, 3)
    wait_for_output(page, 3, "forked twice: All four parts are done.", timeout=60_000)

    view = cell_output_locator(page, 3).locator(".helix-agent-view")
    expect(view.locator(".hx-badge")).to_have_text("completed", timeout=60_000)
    view.get_by_role("tab", name="Checkpoints").click()
    tree = view.locator(".hx-tree")
    rows = tree.locator(".hx-tree-row")
    # -- the tree after two forks: three rows, nested, the current one marked ------------
    expect(rows).to_have_count(3, timeout=60_000)
    assert [r.get_attribute("data-branch") for r in rows.all()] == ["0", "1", "2"]
    expect(rows.nth(1)).to_contain_text("└ from step1branch 1completed")
    expect(rows.nth(2)).to_contain_text("└ from step3branch 2completed")
    expect(tree.locator(".hx-current")).to_have_attribute("data-branch", "2")
    # The current branch is unfolded; the others are folded to their head.
    expect(rows.nth(2).locator(".hx-node")).not_to_have_count(1)
    expect(rows.nth(0).locator(".hx-fold")).to_be_visible()
    tree.scroll_into_view_if_needed()
    screenshot(page, "viewer-1-tree-after-two-forks")

    # -- unfold branch 0 and click its step-2 node; fork from it ---------------------------
    rows.nth(0).locator(".hx-fold").click()
    node = rows.nth(0).locator(".hx-node", has_text="2").first
    expect(node).to_be_visible(timeout=60_000)
    node.click()
    expect(rows.nth(0).locator(".hx-node.hx-selected")).to_have_text("2")
    editor = view.locator(".widget-textarea textarea")
    expect(editor).to_have_value('{\n "parts_done": [\n  1,\n  2\n ]\n}', timeout=60_000)
    screenshot(page, "viewer-2-node-selected")
    view.get_by_role("button", name="Retry from checkpoint").click()
    expect(view).to_contain_text("Forked a new branch from step 2", timeout=60_000)
    expect(rows).to_have_count(4, timeout=60_000)
    # Depth first: branch 3 forked from branch 0, after branch 1 and its child branch 2.
    assert [r.get_attribute("data-branch") for r in rows.all()] == ["0", "1", "2", "3"]
    expect(rows.nth(3)).to_contain_text("└ from step2branch 3")
    assert rows.nth(3).evaluate("el => el.style.paddingLeft") == "1.5em"  # a child of 0
    expect(tree.locator(".hx-current")).to_have_attribute("data-branch", "3")
    expect(tree.locator(".hx-current")).to_contain_text("completed", timeout=60_000)
    screenshot(page, "viewer-3-forked-from-node")

    # -- search: a hit jumps to its step ----------------------------------------------------
    box = view.locator(".hx-tree-panel input[type=text]")
    box.fill('"part 3"')
    box.press("Enter")
    hits = view.locator(".hx-search-hits select option")
    expect(hits.first).to_be_attached(timeout=60_000)
    labels = hits.all_inner_texts()
    assert labels and all("step" in label for label in labels), labels
    view.locator(".hx-search-hits select").select_option(index=0)
    expect(view).to_contain_text("selected its checkpoint", timeout=60_000)
    expect(view.locator(".hx-tree-panel")).to_contain_text("part 3")
    expect(tree.locator(".hx-node.hx-selected")).to_have_count(1)
    view.locator(".hx-tree-panel").evaluate("el => el.scrollIntoView({block: 'start'})")
    screenshot(page, "viewer-4-search")

    box.fill("AND")
    box.press("Enter")
    expect(view).to_contain_text("not valid FTS5", timeout=60_000)
    for n, stage in enumerate(("tree-after-two-forks", "node-selected", "forked-from-node",
                               "search"), start=1):
        assert (artifacts / f"viewer-{n}-{stage}.png").stat().st_size > 10_000
