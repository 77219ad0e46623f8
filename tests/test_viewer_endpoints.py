"""``GET /branches``, the paged ``GET /checkpoints`` and ``GET /search`` on every backend: the
in-kernel LocalBackend and ``helix serve`` (a real child process, over HTTP).

The session is :mod:`e2e_scenario`'s ``stepper`` (thinking "Step k of N.", a ``work``
tool call with ``{"n": k}`` answered "did k", then "finished N steps"), forked twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import e2e_scenario
import httpx
import pytest
from served import TOKEN, Served

from helix_lab import RemoteBackend
from helix_lab.client.backend import Backend
from helix_lab.errors import BadRequestError, NotFoundError


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("serve") / "objects").start()
    yield server
    server.stop()
    assert "Traceback" not in "".join(server.output) + server.log.read_text()


@pytest.fixture(params=["local", "serve"])
async def backend(request: pytest.FixtureRequest, make_runtime: Any) -> AsyncIterator[Backend]:
    if request.param == "local":
        yield make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter).backend
        return
    served: Served = request.getfixturevalue("served")
    async with RemoteBackend(served.url, token=TOKEN) as remote:
        yield remote


async def forked_twice(backend: Backend, session_id: str) -> tuple[Any, dict[str, Any]]:
    """steps=3 on branch 0; a fork from its step 1 (branch 1); a fork from branch 1's step 2
    (branch 2). Returns the last handle and the checkpoints by (branch, step)."""
    handle = await backend.start("stepper", "steps=3", session_id=session_id)
    assert await handle.result() == "finished 3 steps"
    by = {(c["branch"], c["step"]): c for c in await handle.checkpoints()}
    first = await handle.resume(mode="from_checkpoint", checkpoint_id=by[0, 1]["checkpointId"])
    await first.result()
    by = {(c["branch"], c["step"]): c for c in await handle.checkpoints()}
    second = await first.resume(mode="from_checkpoint", checkpoint_id=by[1, 2]["checkpointId"],
                                modify_state={"label": "second fork"})
    await second.result()
    return second, {(c["branch"], c["step"]): c for c in await handle.checkpoints()}


async def test_branches_describe_the_tree(backend: Backend) -> None:
    handle, by = await forked_twice(backend, "tree")
    all_checkpoints = await handle.checkpoints()
    heads = {}
    for c in all_checkpoints:  # oldest first: the last one seen per branch is its head
        heads[c["branch"]] = c
    branches = await handle.branches()
    assert [b["branch"] for b in branches] == [0, 1, 2]
    for b in branches:
        assert b["headCheckpointId"] == heads[b["branch"]]["checkpointId"]
        assert b["headStep"] == heads[b["branch"]]["step"]
        assert b["checkpointCount"] == sum(c["branch"] == b["branch"] for c in all_checkpoints)
        assert b["status"] == "completed"
    root, one, two = branches
    assert (root["parentBranch"], root["forkCheckpointId"], root["forkStep"]) == (None, None, None)
    assert (one["parentBranch"], one["forkCheckpointId"], one["forkStep"]) == (
        0, by[0, 1]["checkpointId"], 1)
    assert (two["parentBranch"], two["forkCheckpointId"], two["forkStep"]) == (
        1, by[1, 2]["checkpointId"], 2)
    assert [b["current"] for b in branches] == [False, False, True]
    # The branch being run shows the session's status, not its last checkpoint's.
    again = await handle.resume(mode="from_checkpoint", checkpoint_id=by[0, 0]["checkpointId"])
    running = await again.branches()
    assert running[-1]["current"] and running[-1]["branch"] == 3
    await again.result()


async def test_checkpoints_page_by_branch_after_and_before(backend: Backend) -> None:
    handle, _ = await forked_twice(backend, "pages")
    everything = await handle.checkpoints()
    sequences = [c["sequence"] for c in everything]
    assert sequences == sorted(sequences)

    pages, after = [], 0
    while True:
        page = await handle.checkpoints_page(after=after, limit=4)
        pages += page["checkpoints"]
        if not page["hasMore"]:
            break
        assert len(page["checkpoints"]) == 4
        after = page["checkpoints"][-1]["sequence"]
    assert pages == everything

    branch1 = [c for c in everything if c["branch"] == 1]
    page = await handle.checkpoints_page(branch=1, limit=100)
    assert page == {"sessionId": "pages", "hasMore": False, "checkpoints": branch1}
    newest = await handle.checkpoints_page(branch=1, before=2**40, limit=2)
    assert newest["checkpoints"] == branch1[-2:] and newest["hasMore"]
    older = await handle.checkpoints_page(branch=1, before=branch1[-2]["sequence"], limit=100)
    assert older["checkpoints"] == branch1[:-2] and not older["hasMore"]


async def test_bad_checkpoint_and_branch_requests_are_clear_400s_and_404s(
        backend: Backend) -> None:
    handle = await backend.start("stepper", "steps=1", session_id="bad")
    await handle.result()
    for params, field in (({"branch": "x"}, "branch"), ({"limit": "-1"}, "limit"),
                          ({"brnach": "1"}, "brnach"), ({"after": "1.5"}, "after")):
        with pytest.raises(BadRequestError) as info:
            await handle._call("GET", "/checkpoints", params=params)
        assert info.value.details["field"] == field, params
    with pytest.raises(NotFoundError) as missing:
        await handle.checkpoints_page(branch=7)
    assert missing.value.code == "branch_not_found" and "GET /branches" in missing.value.message
    never = backend.handle("never-started", "stepper")
    for call in (never.branches(), never.checkpoints_page(), never.search("x")):
        with pytest.raises(NotFoundError):
            await call


async def test_search_finds_text_thinking_and_tools_and_points_at_the_chunk(
        backend: Backend) -> None:
    handle, _ = await forked_twice(backend, "search")
    finished = await handle.search("finished")
    assert {h["type"] for h in finished} == {"text_delta"}
    assert len(finished) == 3  # one answer per branch
    assert all("«finished»" in h["snippet"] for h in finished)
    thinking = await handle.search('"Step 2 of 3"')
    assert thinking and {h["type"] for h in thinking} == {"thinking"}
    assert {h["step"] for h in thinking} == {2}
    tool_in = await handle.search("work AND n")
    assert tool_in and {h["type"] for h in tool_in} == {"tool_start"}
    tool_out = await handle.search('"did 3"', limit=1)
    assert len(tool_out) == 1 and tool_out[0]["type"] == "tool_end"
    assert tool_out[0]["snippet"] == "«did 3»"
    for hit in finished + thinking + tool_in + tool_out:  # each hit names its chunk
        chunk = (await handle.history(hit["sequence"] - 1, 1))["chunks"][0]
        assert (chunk["type"], chunk["step"]) == (hit["type"], hit["step"])
    assert await handle.search("walrus") == []


@pytest.mark.parametrize(("params", "needle"), [
    ({"q": '"unclosed'}, "unterminated"),
    ({"q": "AND"}, "syntax error"),
    ({"q": "col:otters"}, "no such column"),
    ({"q": "   "}, "q is required"),
    ({}, "q is required"),
    ({"q": "x" * 1001}, "at most 1000"),
    ({"q": "x", "limit": "many"}, "limit must be a whole number"),
    ({"q": "x", "query": "y"}, "Unknown query parameter"),
])
async def test_a_bad_search_is_a_400_with_the_reason(backend: Backend, params: dict[str, str],
                                                     needle: str) -> None:
    handle = await backend.start("stepper", "steps=1", session_id="badq")
    await handle.result()
    with pytest.raises(BadRequestError) as info:
        await handle._call("GET", "/search", params=params)
    assert needle in info.value.message
    assert await handle.search("finished")  # the index is fine afterwards


async def test_the_wire_form_of_a_bad_search(served: Served) -> None:
    async with RemoteBackend(served.url, token=TOKEN) as remote:
        await (await remote.start("stepper", "steps=1", session_id="wire")).result()
    async with httpx.AsyncClient(base_url=served.url,
                                 headers={"authorization": f"Bearer {TOKEN}"}) as client:
        response = await client.get("/sessions/wire/search", params={"q": "AND"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_query" and error["field"] == "q"
    assert "not valid FTS5" in error["message"] and "Traceback" not in response.text


def test_storage_written_before_the_index_existed_is_indexed_when_opened(
        tmp_path: Path) -> None:
    """A session stored without a search table (an older helix_lab) is indexed on open."""
    from helix_lab.runtime.session_storage import SessionStorage
    from helix_lab.runtime.sql import SqliteStorage

    path = tmp_path / "old.sqlite"
    sql = SqliteStorage(path)
    storage = SessionStorage(sql)
    storage.stream.write({"type": "text_delta", "delta": "the sea otter "}, step=1)
    storage.stream.write({"type": "text_delta", "delta": "floats"}, step=1)
    storage.stream.write({"type": "checkpoint", "checkpointId": "cp"}, step=1)
    storage.commit()
    sql.exec("DROP TABLE helix_search")
    sql.close()

    reopened = SessionStorage(SqliteStorage(path))
    [hit] = reopened.stream.search.search("otter", 5)
    assert hit == {"sequence": 1, "step": 1, "type": "text_delta",
                   "snippet": "the sea «otter» floats"}
