"""``BranchTree``'s model through a recording dummy comm: what goes to the front end, what
comes back, and what the model refuses. The drawing itself is tested in Chromium
(``tests/browser/test_viewer.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import traitlets
from dummy_comm import CommRecorder, from_front_end, front_end_state

from helix_lab.widgets.branch_tree import PAGE_SIZE, BranchTree

pytestmark = pytest.mark.usefixtures("comms")  # the recording comm, from conftest.py


def branch(n: int, parent: int | None, fork_step: int | None, head_step: int,
           count: int, status: str = "completed") -> dict[str, Any]:
    return {"branch": n, "parentBranch": parent,
            "forkCheckpointId": None if parent is None else f"cp-{parent}-{fork_step}",
            "forkStep": fork_step, "headCheckpointId": f"cp-{n}-{head_step}",
            "headStep": head_step, "headSequence": 1000 * (n + 1), "checkpointCount": count,
            "status": status}


def page(n: int, steps: range) -> dict[str, Any]:
    return {"branch": n, "hasEarlier": steps.start > 0, "hasMore": False,
            "items": [{"checkpointId": f"cp-{n}-{s}", "step": s, "status": "completed",
                       "sequence": 10 * s} for s in steps]}


def test_the_front_end_gets_the_esm_css_and_traits_on_open() -> None:
    tree = BranchTree(branches=[branch(0, None, None, 7, 8)], current_branch=0)
    state = front_end_state(tree)
    here = Path(__file__).resolve().parents[1] / "helix_lab" / "widgets"
    assert state["_esm"] == (here / "branch_tree.js").read_text()
    assert state["_css"] == (here / "branch_tree.css").read_text()
    assert state["branches"][0]["headCheckpointId"] == "cp-0-7"
    assert state["current_branch"] == 0
    assert repr(tree) == "BranchTree(branches=1, current=0, selected='')"


def test_updates_carry_only_what_changed(comms: CommRecorder) -> None:
    rows = [branch(0, None, None, 9_999, 10_000), branch(1, 0, 3, 5, 3)]
    tree = BranchTree(branches=rows)
    comm = tree.comm
    opened = len(comm.sent)

    tree.page = page(0, range(9_970, 10_000))
    tree.current_branch = 1
    tree.branches = rows  # equal: nothing is sent
    updates = [m.data for m in comm.sent[opened:]]
    assert [sorted(u["state"]) for u in updates] == [["page"], ["current_branch"]]
    # A page is bounded, and the message does not grow with the branch's length.
    assert len(json.dumps(updates[0])) < 4_000

    tree.branches = [*rows[:1], {**rows[1], "status": "running"}]
    assert sorted(comm.sent[-1].data["state"]) == ["branches"]
    assert front_end_state(tree)["branches"][1]["status"] == "running"


def test_a_click_in_the_front_end_selects_a_checkpoint() -> None:
    tree = BranchTree(branches=[branch(0, None, None, 2, 3)])
    seen: list[str] = []
    tree.observe(lambda change: seen.append(change["new"]), names="selected")
    from_front_end(tree, {"method": "update", "state": {"selected": "cp-0-1"}})
    assert tree.selected == "cp-0-1"
    assert seen == ["cp-0-1"]


def test_page_requests_from_the_front_end_reach_the_handler() -> None:
    tree = BranchTree(branches=[branch(0, None, None, 2, 3)])
    asked: list[dict[str, int]] = []
    tree.on_page(asked.append)
    from_front_end(tree, {"method": "custom",
                          "content": {"type": "page", "branch": 0, "before": 1001}})
    from_front_end(tree, {"method": "custom",
                          "content": {"type": "page", "branch": 2, "after": 40}})
    # Malformed requests are dropped, not raised into the kernel.
    for content in ({"type": "page"}, {"type": "page", "branch": "0"}, {"type": "other"}, []):
        from_front_end(tree, {"method": "custom", "content": content})
    assert asked == [{"branch": 0, "before": 1001}, {"branch": 2, "after": 40}]


def test_the_model_refuses_malformed_rows_and_oversized_pages() -> None:
    tree = BranchTree()
    with pytest.raises(traitlets.TraitError, match="lacks"):
        tree.branches = [{"branch": 0}]
    with pytest.raises(traitlets.TraitError, match="at most"):
        tree.page = page(0, range(PAGE_SIZE + 1))
    with pytest.raises(traitlets.TraitError, match="keys"):
        tree.page = {"branch": 0, "items": []}
    assert tree.branches == [] and tree.page == {}
