"""The branch tree and search inside ``AgentView``, through a recording dummy comm, on a real
LocalBackend (sqlite files) with :mod:`e2e_scenario`'s stepper forked twice. What the
front end is sent is read back from the comm; front-end clicks are played into it."""

from __future__ import annotations

import json
from typing import Any

import e2e_scenario
import pytest
from dummy_comm import from_front_end, front_end_state
from helpers import eventually
from test_viewer_endpoints import forked_twice

from helix_lab.widgets import AgentView
from helix_lab.widgets.branch_tree import PAGE_SIZE

pytestmark = pytest.mark.usefixtures("comms")  # the recording comm, from conftest.py


@pytest.fixture
async def forked(make_runtime: Any) -> Any:
    """A session forked twice, and an AgentView on it that has loaded its checkpoints."""
    backend = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter).backend
    two, by = await forked_twice(backend, "t")
    view = AgentView(two, min_interval=0.01)
    view.follow()
    await eventually(lambda: view.state.status == "completed")
    await view.refresh_checkpoints()
    yield view, by
    view.close()


async def test_the_tree_gets_the_branches_and_the_current_branchs_page(forked: Any) -> None:
    view, by = forked
    tree = view.tree_panel.tree
    drawn = front_end_state(tree)
    assert [(b["branch"], b["parentBranch"], b["forkStep"]) for b in drawn["branches"]] == [
        (0, None, None), (1, 0, 1), (2, 1, 2)]
    assert drawn["current_branch"] == 2
    page = drawn["page"]
    assert page["branch"] == 2 and not page["hasEarlier"] and not page["hasMore"]
    assert [i["checkpointId"] for i in page["items"]] == [
        c["checkpointId"] for c in by.values() if c["branch"] == 2]


async def test_a_click_on_a_node_selects_the_checkpoint_and_retry_forks_from_it(
        forked: Any) -> None:
    view, by = forked
    tree = view.tree_panel.tree
    # Unfold branch 0 from the front end, then click its step-1 node.
    from_front_end(tree, {"method": "custom", "content": {"type": "page", "branch": 0,
                                                         "before": 2**40}})
    await eventually(lambda: tree.page.get("branch") == 0)
    assert [i["step"] for i in front_end_state(tree)["page"]["items"]] == [0, 1, 2, 3, 4]
    target = by[0, 1]["checkpointId"]
    from_front_end(tree, {"method": "update", "state": {"selected": target}})
    assert view.checkpoint_select.value == target
    await eventually(lambda: view.state_editor.value.startswith("{"))
    assert json.loads(view.state_editor.value) == {"done": [1], "label": ""}

    task = view.press("retry")
    await task
    assert "Forked a new branch from step 1" in view.message.value
    await eventually(lambda: view.handle.run_id is not None)
    await view.handle.result()
    await view.refresh_checkpoints()
    rows = front_end_state(tree)["branches"]
    assert rows[-1]["branch"] == 3 and rows[-1]["forkCheckpointId"] == target
    assert rows[-1]["current"] and front_end_state(tree)["current_branch"] == 3
    # The list's selection shows in the tree too.
    view.checkpoint_select.value = by[0, 2]["checkpointId"]
    assert front_end_state(tree)["selected"] == by[0, 2]["checkpointId"]


async def test_a_long_branch_pages_back_and_forth(make_runtime: Any) -> None:
    backend = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter).backend
    handle = await backend.start("stepper", f"steps={PAGE_SIZE + 12}", session_id="long")
    await handle.result()
    view = AgentView(handle)
    await view.refresh_checkpoints()
    tree = view.tree_panel.tree
    newest = tree.page
    assert len(newest["items"]) == PAGE_SIZE and newest["hasEarlier"] and not newest["hasMore"]
    assert newest["items"][-1]["step"] == PAGE_SIZE + 13  # the final answer's step
    from_front_end(tree, {"method": "custom", "content": {
        "type": "page", "branch": 0, "before": newest["items"][0]["sequence"]}})
    await eventually(lambda: tree.page["items"][0]["step"] == 0)
    older = tree.page
    assert not older["hasEarlier"] and older["hasMore"]
    assert older["items"][-1]["step"] == newest["items"][0]["step"] - 1
    # The user paged back: a refresh leaves the page where it is.
    await view.refresh_checkpoints()
    assert tree.page == older
    from_front_end(tree, {"method": "custom", "content": {
        "type": "page", "branch": 0, "after": older["items"][-1]["sequence"]}})
    await eventually(lambda: tree.page["items"][0]["step"] == older["items"][-1]["step"] + 1)
    assert tree.page["hasEarlier"]
    view.close()


async def test_search_lists_hits_and_a_hit_jumps_to_its_step(forked: Any) -> None:
    view, by = forked
    panel = view.tree_panel
    panel.search_box.value = '"did 2"'
    await eventually(lambda: len(panel.hit_select.options) > 0)
    assert all(label.startswith("step ") and "tool_end" in label
               for label, _ in panel.hit_select.options)
    assert "hits for" in view.message.value
    panel.hit_select.value = 0
    hit = panel.hits[0]
    await eventually(lambda: "selected its checkpoint" in view.message.value)
    chosen = view.checkpoint_select.value
    cp = next(c for c in by.values() if c["checkpointId"] == chosen)
    assert cp["step"] == hit["step"] and cp["sequence"] > hit["sequence"]
    assert front_end_state(panel.tree)["selected"] == chosen
    assert "did 2" in panel.context.value and f"step {hit['step']}" in panel.context.value

    panel.search_box.value = "AND"
    await eventually(lambda: "Search failed" in view.message.value)
    assert "not valid FTS5" in view.message.value and panel.hit_select.options == ()
