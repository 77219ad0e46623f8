"""The time-travel viewer in real JupyterLab and Chromium: the branch tree's drawing, and the
tree and search inside ``AgentView`` on a session forked twice.

Screenshots go to the artifacts dir as ``viewer-*.png``.
"""

from __future__ import annotations

import pytest
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
    expect(tree).to_be_visible(timeout=30_000)
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
