"""``diff_runs`` and ``%helix diff``: where two branches or sessions part, on every backend.

The same comparisons run on a LocalBackend and on ``helix serve`` (a real subprocess,
RemoteBackend over HTTP) with the e2e ``stepper`` agent; scripted agents cover each reason
two runs can part: a state edit, a different model response, a different tool result, a
different start, and sessions of different agents.
"""

from __future__ import annotations

from typing import Any

import e2e_scenario
import pytest
from served import TOKEN, Served
from test_magics import Kernel, kernel, shell, shown  # noqa: F401

import helix_lab
from helix_lab import Agent, LLMConfig, RemoteBackend, ToolContext, tool
from helix_lab.client.diff import RunDiff, diff_runs, session_of_checkpoint
from helix_lab.difference import first_difference
from helix_lab.errors import UserError
from helix_lab.llm.scripted import ScriptedLLM, Turn, call


def assert_divergence(diff: RunDiff, step: int, reason: str, *details: str) -> None:
    """The two runs part at ``step`` for ``reason``, and the detail names each of ``details``."""
    assert diff.divergence is not None
    assert (diff.divergence.step, diff.divergence.reason) == (step, reason)
    for detail in details:
        assert detail in diff.divergence.detail, (detail, diff.divergence.detail)


async def branch_and_session_diffs(backend: Any, tag: str) -> dict[str, Any]:
    """Fork a stepper run with a state edit, and run a second session; diff both ways."""
    h = await backend.start("stepper", "steps=3", session_id=f"d-{tag}")
    assert await h.result() == "finished 3 steps"
    checkpoints = await h.checkpoints()
    original_head = checkpoints[-1]["checkpointId"]
    first = next(c for c in checkpoints if c["step"] == 1)
    fork = await h.resume("from_checkpoint", checkpoint_id=first["checkpointId"],
                          modify_state={"label": "forked"})
    assert await fork.result() == "finished 3 steps"

    branches = await diff_runs((h, original_head), h)
    by_name = await diff_runs(f"d-{tag}@0", f"d-{tag}@1", backend=backend)
    assert by_name.to_dict()["divergence"] == branches.to_dict()["divergence"]

    other = await backend.start("stepper", "steps=2", session_id=f"e-{tag}")
    assert await other.result() == "finished 2 steps"
    sessions = await diff_runs(h, other)
    same = await diff_runs(h, (h, original_head))
    return {"branches": branches, "sessions": sessions, "head_vs_original": same}


def check_branch_and_session_diffs(found: dict[str, Any]) -> None:
    branches: RunDiff = found["branches"]
    assert_divergence(branches, 2, "state edit", "state.label", "'forked'")
    assert branches.same_agent and branches.notes == []
    assert branches.state_patch == [{"op": "replace", "path": "/label", "value": "forked"}]
    assert branches.left.output == branches.right.output == "finished 3 steps"
    assert [n for n, _, _ in branches.side_by_side()] == [2, 3, 4]
    assert 'work({"n": 2})' in branches.side_by_side()[0][1]
    totals = branches.totals()
    assert totals["inputTokens"][0] == totals["inputTokens"][1] > 0
    assert totals["costUsd"][0] == totals["costUsd"][1] > 0  # the stepper's model is priced
    text = str(branches)
    assert "diverge at step 2: state edit" in text
    assert "replace /label 'forked'" in text
    assert "output: the same ('finished 3 steps')" in text

    sessions: RunDiff = found["sessions"]
    assert_divergence(sessions, 0, "different start",
                      "messages[0].content", "'steps=3'", "'steps=2'")
    assert sessions.left.output == "finished 3 steps"
    assert sessions.right.output == "finished 2 steps"
    assert "output: left 'finished 3 steps'" in str(sessions)

    # The head of the fork against the original head: the same edit, seen from the start.
    assert found["head_vs_original"].divergence.reason == "state edit"


async def test_branches_and_sessions_on_the_local_backend(make_runtime) -> None:
    runtime = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    check_branch_and_session_diffs(await branch_and_session_diffs(runtime.backend, "local"))


async def test_branches_and_sessions_on_helix_serve(served: Served) -> None:
    async with RemoteBackend(served.url, token=TOKEN) as backend:
        check_branch_and_session_diffs(await branch_and_session_diffs(backend, "remote"))


# -- each reason two runs part, with scripted agents -----------------------------------------

RESULTS: dict[str, str] = {}


@tool
def lookup(topic: str, ctx: ToolContext) -> str:
    """Look a topic up."""
    ctx.update_state(lambda s: s.update(seen=[*s.get("seen", []), topic]))
    return RESULTS.get(ctx.session_id, "nothing found")


def scripted_agents(*names: str) -> list[Agent]:
    return [Agent(name=name, tools=[lookup], register=False) for name in names]


async def finished(runtime: Any, agent: str, message: str, left: str, right: str) -> Any:
    """Run ``agent`` on ``message`` in sessions ``left`` and ``right``; both handles, ended."""
    a = await runtime.backend.start(agent, message, session_id=left)
    b = await runtime.backend.start(agent, message, session_id=right)
    await a.result(), await b.result()
    return a, b


def per_session(scripts: dict[str, list[Any]]):  # type: ignore[no-untyped-def]
    models = {session: ScriptedLLM(turns) for session, turns in scripts.items()}
    return lambda env, ctx: models[ctx.session_id]


async def test_a_different_model_response(make_runtime) -> None:
    looked = Turn(text="Let me look.", tool_calls=[call("lookup", topic="otters")])
    runtime = make_runtime(scripted_agents("a"), per_session({
        "s1": [looked, "Otters use stones."], "s2": [looked, "Otters float on their backs."]}))
    a, b = await finished(runtime, "a", "otters?", "s1", "s2")

    diff = await diff_runs(a, b)

    assert diff.divergence is not None
    assert (diff.divergence.step, diff.divergence.reason) == (2, "different model response")
    assert diff.divergence.detail == ("response[0].content[0].text: left 'Otters use stones.', "
                                      "right 'Otters float on their backs.'")
    assert diff.side_by_side() == [(2, "Otters use stones.", "Otters float on their backs.")]
    assert diff.state_difference is None
    assert not diff.identical


async def test_an_unpriced_model_costs_unpriced_never_zero(make_runtime) -> None:
    local = Agent(name="local", tools=[lookup], llm_config=LLMConfig(model="my-local-llama"),
                  register=False)
    runtime = make_runtime([local], per_session({"u1": ["one"], "u2": ["two"]}))
    a, b = await finished(runtime, "local", "hi", "u1", "u2")

    diff = await diff_runs(a, b)

    assert diff.totals()["costUsd"] == (None, None)
    cost_row = next(line for line in str(diff).splitlines() if line.startswith("costUsd"))
    assert cost_row.split() == ["costUsd", "unpriced", "unpriced", "—"]


async def test_a_different_tool_result(make_runtime) -> None:
    looked = Turn(tool_calls=[call("lookup", topic="otters")])
    runtime = make_runtime(scripted_agents("a"), per_session({"t1": [looked, "done"],
                                                             "t2": [looked, "done"]}))
    RESULTS.update(t1="otters use rocks", t2="otters eat urchins")
    a, b = await finished(runtime, "a", "otters?", "t1", "t2")

    diff = await diff_runs(a, b)

    assert_divergence(diff, 1, "different tool result",
                      "toolResults[0].content[0].content", "'otters use rocks'")
    step_one = diff.side_by_side()[0]
    assert step_one[0] == 1
    assert "→ otters use rocks" in step_one[1] and "→ otters eat urchins" in step_one[2]


async def test_a_different_input_message(make_runtime) -> None:
    runtime = make_runtime(scripted_agents("a"), per_session({"v1": ["one", "two"],
                                                             "v2": ["one", "two"]}))
    a, b = await finished(runtime, "a", "go", "v1", "v2")
    a, b = await a.send("and otters?"), await b.send("and seals?")
    await a.result(), await b.result()

    diff = await diff_runs(a, b)

    assert diff.divergence is not None
    assert (diff.divergence.step, diff.divergence.reason) == (2, "different input message")
    assert diff.divergence.detail == ("messages[2].content: left 'and otters?', right "
                                      "'and seals?'")
    assert diff.left.output == diff.right.output == "two"


async def test_sessions_of_different_agents_are_compared_and_say_so(make_runtime) -> None:
    runtime = make_runtime(scripted_agents("a", "b"), per_session({
        "u1": [Turn(tool_calls=[call("lookup", topic="otters")]), "one"],
        "u2": [Turn(tool_calls=[call("lookup", topic="seals")]), "two", ]}))
    a = await runtime.backend.start("a", "go", session_id="u1")
    b = await runtime.backend.start("b", "go", session_id="u2")
    await a.result(), await b.result()

    diff = await diff_runs(a, b)

    assert not diff.same_agent
    assert diff.notes[0].startswith("the two runs use different agents (a and b)")
    assert_divergence(diff, 1, "different model response", "'otters'", "'seals'")
    assert diff.state_patch == [{"op": "replace", "path": "/seen/0", "value": "seals"}]
    assert "note: the two runs use different agents" in str(diff)


async def test_a_fork_with_no_change_does_not_diverge(make_runtime) -> None:
    runtime = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    h = await runtime.backend.start("stepper", "steps=2", session_id="same")
    await h.result()
    head = (await h.checkpoints())[-1]["checkpointId"]
    fork = await h.resume("from_checkpoint",
                          checkpoint_id=(await h.checkpoints())[1]["checkpointId"])
    await fork.result()

    diff = await diff_runs((h, head), h)

    assert diff.divergence is None and diff.identical
    assert diff.side_by_side() == []
    assert "no divergence: every step is the same" in str(diff)


async def test_bad_sides_are_clear_errors(make_runtime) -> None:
    runtime = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    h = await runtime.backend.start("stepper", "steps=1", session_id="bad")
    await h.result()

    with pytest.raises(UserError, match="which backend"):
        await diff_runs("bad", "bad@0")
    with pytest.raises(UserError, match="no checkpoint 'cpv1-bad-s9-t1-abcdef'"):
        await diff_runs(h, "cpv1-bad-s9-t1-abcdef")
    with pytest.raises(UserError, match="has no branch 4; its branches are 0"):
        await diff_runs(h, "bad@4")
    with pytest.raises(UserError, match="no session 'ghost'"):
        await diff_runs(h, "ghost")
    with pytest.raises(UserError, match="compares AgentHandles"):
        await diff_runs(h, 42)


def test_checkpoint_ids_name_their_session() -> None:
    assert session_of_checkpoint("cpv1-my-session-s12-t1733000000000-0a1b2c") == "my-session"
    assert session_of_checkpoint("my-session") is None


def test_first_difference_names_the_path() -> None:
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2.0}]}) is None
    found = first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]})
    assert (found.path, found.left, found.right) == ("a[1].b", 2, 3)
    assert first_difference([1], [1, 2]).path == "[1]"
    assert first_difference({"x": True}, {"x": 1}).path == "x"
    assert first_difference({}, {"new": 1}).path == "new"


def test_diff_runs_is_exported_lazily() -> None:
    assert helix_lab.diff_runs is diff_runs
    assert "diff_runs" in helix_lab.__all__


async def test_helix_diff_magic(kernel: Kernel) -> None:  # noqa: F811
    await kernel.ok("%%helix_agent researcher --session m1 --wait\nWhat do otters eat?")
    await kernel.ok("%%helix_agent researcher --session m2 --wait\nWhere do seals sleep?")

    ran = await kernel.ok("%helix diff m1 m2")

    assert ran.out.startswith("left:  m1 @ head (branch 0) · researcher · completed")
    assert "diverge at step 0: different start — messages[0].content: left 'What do " in ran.out
    diff = kernel.ns["_helix_diff"]
    assert isinstance(diff, RunDiff) and diff.divergence.step == 0
    message = await kernel.usage_error("%helix diff m1")
    assert message.startswith("Usage: %helix diff A B")
    message = await kernel.usage_error("%helix diff m1 m1@3")
    assert "has no branch 3" in message


async def test_agent_view_compare_with_shows_where_the_runs_part(make_runtime,
                                                                monkeypatch) -> None:
    from dummy_comm import record_comms

    from helix_lab.widgets import AgentView

    record_comms(monkeypatch)
    runtime = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    found = await branch_and_session_diffs(runtime.backend, "view")
    h = found["branches"].left.handle
    original, fork = found["branches"].left.checkpoint_id, found["branches"].right.checkpoint_id
    view = AgentView(h)

    await view.show_checkpoint(original, fork)

    assert "diverge at step 2: state edit — state.label: left &#x27;&#x27;, right " \
           "&#x27;forked&#x27;" in view.checkpoint_diff.value
    assert "+ &quot;label&quot;: &quot;forked&quot;" in view.checkpoint_diff.value  # state diff below
    await view.show_checkpoint(original)  # against the latest: the fork's head
    assert "diverge at step 2: state edit" in view.checkpoint_diff.value
    view.close()
