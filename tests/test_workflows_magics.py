"""``%%helix_agent NAME --approach workflows`` in a real IPython shell: the same handle and
view, and ``%helix status`` lists the workflow instance's steps."""

from __future__ import annotations

from test_magics import Kernel, kernel, shell, shown  # noqa: F401 (pytest fixtures)

from helix_lab import AgentHandle


async def test_an_agent_cell_runs_as_a_workflow_and_status_lists_its_steps(
        kernel: Kernel) -> None:  # noqa: F811
    ran = await kernel.ok("%%helix_agent researcher --session wf1 --approach workflows --wait\n"
                          "What do sea otters eat?")
    assert "session wf1 · researcher · completed" in ran.out
    handle = kernel.ns["_helix"]
    assert isinstance(handle, AgentHandle)
    status = await handle.status()
    assert status["approach"] == "workflows" and status["instanceStatus"] == "complete"
    names = [s["name"] for s in status["steps"]]
    assert names[:2] == ["initialize", "model 1"] and names[-1] == "end stream"

    ran = await kernel.ok("%helix status wf1")
    assert "workflow instance wf1-" in ran.out and "· complete" in ran.out
    assert "initialize" in ran.out and "model 1" in ran.out and "attempts" in ran.out
    view = kernel.views()[0]  # the cell's own view, flushed by --wait
    assert view.state.status == "completed"
    marks = [how for mark in view.state.steps.values() for how, _ in mark.durable.values()]
    assert marks and set(marks) == {"ran"}

    message = await kernel.usage_error("%%helix_agent researcher --approach lambda\nhi")
    assert "invalid choice: 'lambda'" in message
