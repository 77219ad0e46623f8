"""``@tool`` and ``Agent``: schemas from signatures, calling conventions, validation, and
the order of the per-tool hooks in a real run."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest
from helpers import of_type
from pydantic import BaseModel

from helix_lab import Agent, AgentHooks, ToolContext, tool
from helix_lab.agent import FINISH_TOOL
from helix_lab.errors import ToolError, UserError
from helix_lab.llm import ScriptedLLM, Turn, call
from helix_lab.tools import Tool


class Notes(pydantic.BaseModel):
    notes: list[str] = []


class Answer(pydantic.BaseModel):
    answer: str


# -- @tool --------------------------------------------------------------------------------


def test_schema_comes_from_the_signature_and_hides_the_context() -> None:
    @tool
    async def search(query: str, ctx: ToolContext, limit: int = 5,
                     tags: list[str] | None = None) -> list[str]:
        """Search the notes corpus.

        Longer explanation that the model does not need.
        """
        return []

    assert isinstance(search, Tool)
    schema = search.input_schema
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"query", "limit", "tags"}
    assert schema["required"] == ["query"]
    assert schema["properties"]["query"]["type"] == "string"
    assert schema["properties"]["limit"] == {"default": 5, "title": "Limit", "type": "integer"}
    assert schema["properties"]["tags"]["default"] is None
    assert "title" not in schema
    assert search.context_param == "ctx"
    assert search.description == "Search the notes corpus."
    assert search.spec() == {"name": "search", "description": "Search the notes corpus.",
                             "input_schema": schema}


def test_name_description_and_timeout_can_be_given() -> None:
    @tool(name="lookup", description="Look a word up.", timeout=None)
    def anything(word: str) -> str:
        """Ignored docstring."""
        return word

    assert (anything.name, anything.description, anything.timeout) == (
        "lookup", "Look a word up.", None)
    assert anything.context_param is None


def test_without_docstring_the_description_is_the_name() -> None:
    @tool
    def bare(x: int) -> int:
        return x

    assert bare.description == "bare"


def test_unannotated_parameters_accept_any_json() -> None:
    @tool
    def loose(thing, count: int = 1):  # type: ignore[no-untyped-def]
        return [thing] * count

    assert loose.input_schema["required"] == ["thing"]
    assert asyncio.run(loose.call({"thing": {"k": [1]}}, None)) == [{"k": [1]}]


def test_star_args_cannot_become_a_schema() -> None:
    def spread(*items: str) -> str:
        return ""

    with pytest.raises(UserError, match=r"\*args and \*\*kwargs"):
        tool(spread)
    with pytest.raises(UserError, match="needs a function"):
        tool(42)  # type: ignore[call-overload]


async def test_sync_and_async_tools_are_called_with_validated_input() -> None:
    @tool
    def add(a: int, b: int = 10) -> int:
        return a + b

    @tool
    async def shout(text: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"text": text.upper()}

    assert await add.call({"a": 1}, None) == 11
    assert await add.call({"a": "2", "b": 3}, None) == 5  # pydantic's lax coercion
    assert await shout.call({"text": "hi"}, None) == {"text": "HI"}


async def test_the_context_reaches_the_tool() -> None:
    seen: list[Any] = []

    @tool
    def peek(ctx: ToolContext) -> str:
        seen.append(ctx)
        return "ok"

    marker = object()
    assert await peek.call({}, marker) == "ok"  # type: ignore[arg-type]
    assert seen == [marker]


async def test_invalid_input_is_a_tool_error_naming_the_fields() -> None:
    @tool
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(ToolError) as info:
        await add.call({"a": "not a number"}, None)
    message = str(info.value)
    assert message.startswith("Invalid input for tool 'add':")
    assert "a: Input should be a valid integer" in message
    assert "b: Field required" in message


async def test_pydantic_models_are_returned_as_json() -> None:
    @tool
    def answer() -> Answer:
        return Answer(answer="42")

    assert await answer.call({}, None) == {"answer": "42"}


async def test_a_non_json_return_value_is_a_clear_error() -> None:
    @tool
    def weird() -> object:
        return object()

    with pytest.raises(ToolError, match=r"Tool 'weird' returned a object, which is not JSON"):
        await weird.call({}, None)


# -- Agent ---------------------------------------------------------------------------------


@tool
def noop() -> str:
    """Do nothing."""
    return "ok"


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a" * 65, "semi;colon", None])
def test_agent_names_are_validated(name: Any) -> None:
    with pytest.raises(UserError, match="is not valid"):
        Agent(name=name, register=False)


def test_a_plain_function_is_not_a_tool() -> None:
    def plain() -> str:
        return ""

    with pytest.raises(UserError, match=r"is not a tool; decorate it with @tool"):
        Agent(name="a", tools=[plain], register=False)  # type: ignore[list-item]


def test_duplicate_tool_names_are_refused() -> None:
    other = tool(name="noop")(lambda: "x")
    with pytest.raises(UserError, match="has two tools named noop"):
        Agent(name="a", tools=[noop, other], register=False)
    child = Agent(name="kid", register=False)
    clash = tool(name="subagent__kid")(lambda: "x")
    with pytest.raises(UserError, match="subagent__kid"):
        Agent(name="a", tools=[clash], agents=[child], register=False)


def test_other_agent_settings_are_validated() -> None:
    with pytest.raises(UserError, match="max_steps must be at least 1"):
        Agent(name="a", max_steps=0, register=False)
    with pytest.raises(UserError, match="state_schema must be a pydantic BaseModel"):
        Agent(name="a", state_schema=dict, register=False)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="output_schema must be a pydantic BaseModel"):
        Agent(name="a", output_schema=Notes(), register=False)  # type: ignore[arg-type]


def test_tool_specs_offer_tools_subagents_and_finish() -> None:
    child = Agent(name="kid", description="Knows things.", register=False)
    agent = Agent(name="a", tools=[noop], agents=[child], output_schema=Answer, register=False)
    specs = {s["name"]: s for s in agent.tool_specs()}
    assert list(specs) == ["noop", "subagent__kid", FINISH_TOOL]
    assert specs["subagent__kid"]["description"] == "Knows things."
    assert specs["subagent__kid"]["input_schema"]["required"] == ["message"]
    assert specs[FINISH_TOOL]["input_schema"]["required"] == ["answer"]
    assert agent.find_subagent("subagent__kid") is child
    assert agent.find_subagent("noop") is None
    assert agent.find_tool("noop") is noop


def test_state_is_validated_against_the_schema() -> None:
    agent = Agent(name="a", state_schema=Notes, register=False)
    assert agent.initial_state() == {"notes": []}
    assert agent.initial_state({"notes": ["x"]}) == {"notes": ["x"]}
    with pytest.raises(pydantic.ValidationError):
        agent.validate_state({"notes": "not a list"})
    schemaless = Agent(name="b", register=False)
    with pytest.raises(UserError, match="must be a JSON object"):
        schemaless.validate_state([1, 2])


def test_defining_an_agent_registers_it_nowhere() -> None:
    from helix_lab.runtime.registry import agents_in, default_registry

    before = default_registry.get_registered_types()
    agent = Agent(name="registry_probe_agent")
    assert default_registry.get_registered_types() == before
    assert agents_in({"probe": agent}) == {"registry_probe_agent": agent}


# -- hooks in a real run -----------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_tool_hooks_run_in_order_around_each_tool(make_runtime: Any, flavour: str) -> None:
    calls: list[str] = []

    @tool
    def remember(word: str, ctx: ToolContext) -> str:
        calls.append(f"execute:{word}")
        ctx.update_state(lambda s: s.notes.append(word))
        return word

    @tool
    def look(ctx: ToolContext) -> list[str]:
        calls.append("execute:look")
        return list(ctx.get_state().notes)

    def record(kind: str):  # type: ignore[no-untyped-def]
        def sync_hook(ctx: ToolContext, *args: Any) -> None:
            assert isinstance(ctx, ToolContext) and ctx.session_id == "hooks"
            if kind == "before":
                calls.append(f"before:{args[0]['name']}")
            elif kind == "state":
                calls.append(f"state:{args[0]['notes']}->{args[1]['notes']}")
            elif kind == "message":
                block = args[0]["content"][0]
                assert args[0]["role"] == "user" and block["type"] == "tool_result"
                calls.append(f"message:{block['content']}")
            else:
                calls.append(f"after:{args[0]['name']}:{sorted(args[1])}")

        async def async_hook(ctx: ToolContext, *args: Any) -> None:
            await asyncio.sleep(0)
            sync_hook(ctx, *args)

        return sync_hook if flavour == "sync" else async_hook

    agent = Agent(name="a", tools=[remember, look], state_schema=Notes, register=False,
                  hooks=AgentHooks(before_tool=record("before"), on_state_change=record("state"),
                                   on_message=record("message"), after_tool=record("after")))
    llm = ScriptedLLM([Turn(tool_calls=[call("remember", word="x"), call("look"),
                                        call("missing")]), "done"])
    rt = make_runtime([agent], llm)
    status = await rt.run("hooks")
    assert status["status"] == "completed"
    assert calls == [
        "before:remember", "execute:x", "state:[]->['x']", "message:x",
        "after:remember:['output']",
        "before:look", "execute:look", 'message:["x"]', "after:look:['output']",
        "before:missing", "message:There is no tool named 'missing'. Available tools: "
        "remember, look.", "after:missing:['error']",
    ]
    chunks = await rt.chunks("hooks")
    ends = of_type(chunks, "tool_end")
    assert [("output" in e, "error" in e) for e in ends] == [(True, False), (True, False),
                                                            (False, True)]
    assert (await rt.get("hooks", "/snapshot"))["state"] == {"notes": ["x"]}


async def test_tool_context_emit_usage_and_ids_in_a_run(make_runtime: Any) -> None:
    seen: dict[str, Any] = {}

    @tool
    async def work(ctx: ToolContext) -> str:
        seen.update(session=ctx.session_id, run=ctx.run_id, step=ctx.step,
                    agent=ctx.agent_type, call=ctx.tool_call_id,
                    aborted=ctx.abort_signal.aborted)
        await ctx.emit({"type": "custom", "name": "progress", "data": {"pct": 50}})
        ctx.record_usage(kind="search_api", name="bing", cost=0.25, input_tokens=3, region="eu")
        with pytest.raises(UserError, match='takes a dict with a "type"'):
            await ctx.emit({"name": "no type"})
        ctx.update_state([{"op": "add", "path": "/notes/-", "value": "patched"}])
        with pytest.raises(ToolError, match="does not apply"):
            ctx.update_state([{"op": "remove", "path": "/nothing"}])
        with pytest.raises(ToolError, match="does not fit the state schema"):
            ctx.update_state(lambda s: {"notes": 5})
        return "ok"

    agent = Agent(name="a", tools=[work], state_schema=Notes, register=False)
    rt = make_runtime([agent], ScriptedLLM([Turn(tool_calls=[call("work")]), "done"]))
    response = await rt.start("ctx", "go")
    run_id = response.json()["runId"]
    assert (await rt.wait("ctx"))["status"] == "completed"
    assert seen == {"session": "ctx", "run": run_id, "step": 1, "agent": "a",
                    "call": seen["call"], "aborted": False}
    chunks = await rt.chunks("ctx")
    [custom] = of_type(chunks, "custom")
    assert custom["data"] == {"pct": 50} and custom["step"] == 1 and custom["runId"] == run_id
    usage = await rt.get("ctx", "/usage")
    tool_entries = [e for e in usage["entries"] if e["kind"] == "search_api"]
    assert len(tool_entries) == 1
    assert tool_entries[0]["name"] == "bing" and tool_entries[0]["cost"] == 0.25
    assert tool_entries[0]["metadata"] == {"region": "eu"} and tool_entries[0]["step"] == 1
    assert usage["rollup"]["byKind"]["search_api"]["calls"] == 1
    assert (await rt.get("ctx", "/snapshot"))["state"] == {"notes": ["patched"]}


async def test_a_tool_that_raises_or_times_out_reports_an_error_to_the_model(
        make_runtime: Any) -> None:
    @tool
    def broken() -> str:
        raise RuntimeError("disk on fire")

    @tool(timeout=0.05)
    async def slow() -> str:
        await asyncio.sleep(5)
        return "never"

    @tool
    def refuses() -> str:
        raise ToolError("no such record")

    agent = Agent(name="a", tools=[broken, slow, refuses], register=False)
    llm = ScriptedLLM([Turn(tool_calls=[call("broken"), call("slow"), call("refuses")]), "ok"])
    rt = make_runtime([agent], llm)
    assert (await rt.run("errs"))["status"] == "completed"
    errors = [e["error"] for e in of_type(await rt.chunks("errs"), "tool_end")]
    assert errors == ["Tool 'broken' raised RuntimeError: disk on fire",
                      "Tool 'slow' timed out after 0.05 s.", "no such record"]
    results = llm.requests[1].messages[-1]["content"]
    assert [r["is_error"] for r in results] == [True, True, True]
    assert results[2]["content"] == "no such record"


async def test_a_tool_that_fails_leaves_no_state_change(make_runtime: Any) -> None:
    class Notes(BaseModel):
        notes: list[str] = []

    @tool
    def half_done(ctx: ToolContext) -> str:
        ctx.update_state(lambda s: s.notes.append("half"))
        raise RuntimeError("crashed after writing")

    @tool
    def fine(ctx: ToolContext) -> str:
        ctx.update_state(lambda s: s.notes.append("fine"))
        return "ok"

    agent = Agent(name="a", tools=[half_done, fine], state_schema=Notes, register=False)
    llm = ScriptedLLM([Turn(tool_calls=[call("half_done"), call("fine")]), "done"])
    rt = make_runtime([agent], llm)
    assert (await rt.run("rollback"))["status"] == "completed"
    assert (await rt.get("rollback", "/snapshot"))["state"] == {"notes": ["fine"]}


async def test_emitting_a_chunk_that_is_not_json_is_a_tool_error(make_runtime: Any) -> None:
    @tool
    async def chatty(ctx: ToolContext) -> str:
        await ctx.emit({"type": "custom", "name": "ok", "data": 1})
        await ctx.emit({"type": "custom", "name": "bad", "data": object()})
        return "unreachable"

    agent = Agent(name="a", tools=[chatty], register=False)
    rt = make_runtime([agent], ScriptedLLM([Turn(tool_calls=[call("chatty")]), "done"]))
    assert (await rt.run("emit"))["status"] == "completed"
    chunks = await rt.chunks("emit")
    (end,) = of_type(chunks, "tool_end")
    assert end["error"].startswith("emit() takes JSON data only")
    assert [c["name"] for c in of_type(chunks, "custom")] == ["ok"]
    assert [c["sequence"] for c in chunks] == list(range(1, len(chunks) + 1))
