"""``AgentView.to_html``: one self-contained page of a session, from any backend."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import e2e_scenario
import pytest
from served import TOKEN, Served

from helix_lab import RemoteBackend
from helix_lab.widgets import AgentView
from helix_lab.widgets.html_page import session_html
from helix_lab.widgets.view_state import RENDER_ITEMS

pytestmark = pytest.mark.usefixtures("comms")  # the recording comm, from conftest.py


async def forked(backend: Any, session: str, steps: int) -> Any:
    h = await backend.start("stepper", f"steps={steps}", session_id=session)
    assert await h.result() == f"finished {steps} steps"
    first = next(c for c in await h.checkpoints() if c["step"] == 1)
    fork = await h.resume("from_checkpoint", checkpoint_id=first["checkpointId"],
                          modify_state={"label": "forked"})
    assert await fork.result() == f"finished {steps} steps"
    return h


def text_of(page: str) -> str:
    return re.sub(r"<[^>]+>", "", page)


async def test_to_html_writes_the_whole_run_in_one_file(make_runtime, tmp_path: Path) -> None:
    runtime = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    steps = RENDER_ITEMS // 2 + 10  # more transcript items than the live view draws
    h = await forked(runtime.backend, "page", steps)
    view = AgentView(h)

    path = await view.to_html(tmp_path / "page.html")

    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert "<title>helix_lab · stepper · session page</title>" in page
    # Self-contained: nothing to fetch, nothing to run.
    assert not re.search(r"<script|<link|src=|href=|@import", page, re.IGNORECASE)
    text = text_of(page)
    # The whole transcript, from the first tool call of the first branch on.
    assert len(re.findall(r"out: did 1(?!\d)", text)) == 1  # before the fork point
    assert len(re.findall(rf"out: did {steps}(?!\d)", text)) == 2  # on both branches
    assert "step 1" in text and f"step {steps + 1}" in text
    assert f"finished {steps} steps" in text
    # The tree: the fork hangs under branch 0, and the current branch is marked.
    tree = text[text.index("Branches"):text.index("Transcript")]
    assert "branch 0 · " in tree
    assert "branch 1 (current) · forked at step 1 of branch 0" in tree
    assert page.index("branch 1 (current)") > page.index("branch 0 · ")
    view.close()


async def test_the_tree_hangs_each_branch_under_its_fork_point(make_runtime) -> None:
    runtime = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    h = await forked(runtime.backend, "rows", 2)
    again = await h.retry("from_start", message="steps=1")
    assert await again.result() == "finished 1 steps"

    tree = text_of((await session_html(h)).split("<h2>Branches</h2>")[1].split("<h2>")[0])

    counts = {b["branch"]: b["checkpointCount"] for b in await h.branches()}
    assert tree == (f"branch 0 · {counts[0]} checkpoints, head at step 3 · completed"
                    f"branch 1 · forked at step 1 of branch 0 · {counts[1]} checkpoints, head "
                    "at step 3 · completed"
                    "branch 2 (current) · forked at step 0 of branch 0 · "
                    f"{counts[2]} checkpoints, head at step 2 · completed")


async def test_a_page_of_a_session_on_helix_serve(served: Served, make_runtime) -> None:
    local = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    local_page = await session_html(await forked(local.backend, "both", 3))
    async with RemoteBackend(served.url, token=TOKEN) as remote:
        remote_page = await session_html(await forked(remote, "both", 3))

    def body(page: str) -> str:  # the header names the backend; the rest must agree
        return text_of(page[page.index("<h2>Timeline</h2>"):])

    assert "the server at http://127.0.0.1" in remote_page
    assert re.sub(r"\d+\.\d\d s", "", body(remote_page)) == re.sub(r"\d+\.\d\d s", "",
                                                                  body(local_page))
