"""The shared e2e scenario under ``--approach workflows``, in the kernel: the same
``Backend`` and ``AgentHandle`` over :class:`WorkflowSessions`, then a crash of the host
between two steps, healed by the next access alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import e2e_scenario
from e2e_scenario import contiguous, run_scenario, wait_for_step

from helix_lab.client.backend import LocalBackend
from helix_lab.widgets.view_state import ViewState
from helix_lab.workflows import WorkflowSessions, local_workflows

DEADLINE = 120.0


def sessions_at(path: Path | str) -> WorkflowSessions:
    wf = local_workflows(llm_adapter=e2e_scenario.llm_adapter, agents=e2e_scenario.registry,
                         storage=path)
    return WorkflowSessions(wf, e2e_scenario.registry)


async def test_the_e2e_scenario_passes_with_workflows_in_the_kernel(tmp_path: Path):
    backend = LocalBackend(sessions_at(tmp_path))  # type: ignore[arg-type]
    summary = await asyncio.wait_for(run_scenario(backend, "wf", forks=False), DEADLINE)
    assert summary["messages"][0] == "user"
    assert [c[0] for c in summary["checkpoints"]] == [0, 1, 2, 3, 4]
    # The instance's steps are in the status, each once, all stored.
    status = await backend.handle("basic-wf").status()
    names = [s["name"] for s in status["steps"]]
    assert status["instanceStatus"] == "complete" and len(names) == len(set(names))
    await backend.aclose()
    await backend.namespace.aclose()


async def test_a_host_that_goes_away_mid_run_is_healed_by_the_next_access(tmp_path: Path):
    first = LocalBackend(sessions_at(tmp_path))  # type: ignore[arg-type]
    handle = await first.start("stepper", "steps=5", session_id="heal")
    seen = await asyncio.wait_for(wait_for_step(handle, 2), DEADLINE)
    await first.namespace.aclose()  # the host stops: its tasks end where they are
    await first.aclose()

    second = LocalBackend(sessions_at(tmp_path))  # type: ignore[arg-type]
    again = second.handle("heal")
    assert await asyncio.wait_for(again.result(), DEADLINE) == "finished 5 steps"
    assert (await again.get_state())["done"] == [1, 2, 3, 4, 5]  # no unit done twice
    chunks = [c async for c in again.stream()]
    contiguous(chunks)
    assert [(c["sequence"], c["type"]) for c in chunks[:len(seen)]] == [
        (c["sequence"], c["type"]) for c in seen]
    view = ViewState("stepper", "heal")
    for chunk in chunks:
        view.apply(chunk)
    memoized = [name for mark in view.steps.values()
                for name, (how, _) in mark.durable.items() if how == "memoized"]
    assert "initialize" in memoized and "commit 1" in memoized
    assert view.status == "completed"
    await second.aclose()
    await second.namespace.aclose()
