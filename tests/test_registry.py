"""``AgentRegistry`` and ``AgentNotFoundError``, alone and as a server's resolver."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import error_of

from helix_lab import Agent, AgentNotFoundError, AgentRegistry, UserError
from helix_lab.llm import ScriptedLLM
from helix_lab.runtime import AgentFactoryContext


def ctx(**overrides: Any) -> AgentFactoryContext:
    return AgentFactoryContext(**{"env": {"API_KEY": "k1"}, "session_id": "s1",
                                  "run_id": "run_1", **overrides})


def test_register_resolve_get_has() -> None:
    registry = AgentRegistry()
    agent = Agent(name="researcher", register=False)
    registry.register(agent)
    assert registry.resolve("researcher", ctx()) is agent
    assert registry.get("researcher") is agent
    assert registry.has("researcher") and "researcher" in registry
    assert not registry.has("writer") and "writer" not in registry
    assert registry.get("writer") is None
    assert 42 not in registry


def test_a_later_registration_replaces_the_earlier_one() -> None:
    registry = AgentRegistry()
    first, second = Agent(name="x", register=False), Agent(name="x", register=False)
    registry.register(first)
    registry.register(second)
    assert registry.resolve("x", ctx()) is second
    assert registry.get_registered_types() == ["x"]


def test_register_refuses_what_is_not_an_agent() -> None:
    with pytest.raises(UserError, match="takes an Agent"):
        AgentRegistry().register("researcher")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="needs a callable"):
        AgentRegistry().register_factory("x", "not callable")  # type: ignore[arg-type]


def test_factories_are_called_per_resolve_with_env_and_session() -> None:
    registry = AgentRegistry()
    seen: list[AgentFactoryContext] = []

    def build(context: AgentFactoryContext) -> Agent:
        seen.append(context)
        return Agent(name="brainstorm", system_prompt=f"key={context.env['API_KEY']}",
                     register=False)

    registry.register_factory("brainstorm", build)
    assert registry.has("brainstorm")
    assert registry.get("brainstorm") is None, "get() never calls factories"
    one = registry.resolve("brainstorm", ctx())
    two = registry.resolve("brainstorm", ctx(session_id="s2", user_id="u9"))
    assert one is not two
    assert one.system_prompt == "key=k1"
    assert [(c.session_id, c.run_id, c.user_id) for c in seen] == [
        ("s1", "run_1", None), ("s2", "run_1", "u9")]


def test_factory_and_static_registrations_replace_each_other() -> None:
    registry = AgentRegistry()
    static = Agent(name="x", register=False)
    registry.register_factory("x", lambda c: Agent(name="x", register=False))
    registry.register(static)
    assert registry.resolve("x", ctx()) is static
    registry.register_factory("x", lambda c: Agent(name="x", system_prompt="built",
                                                   register=False))
    assert registry.get("x") is None
    assert registry.resolve("x", ctx()).system_prompt == "built"


def test_unregister_get_registered_types_and_clear() -> None:
    registry = AgentRegistry()
    registry.register(Agent(name="b", register=False))
    registry.register(Agent(name="a", register=False))
    registry.register_factory("c", lambda c: Agent(name="c", register=False))
    assert registry.get_registered_types() == ["a", "b", "c"]
    assert registry.unregister("b") is True
    assert registry.unregister("b") is False
    assert registry.unregister("c") is True
    assert registry.get_registered_types() == ["a"]
    registry.clear()
    assert registry.get_registered_types() == []
    assert not registry.has("a")


def test_unknown_types_raise_agent_not_found_listing_the_available_ones() -> None:
    registry = AgentRegistry()
    registry.register(Agent(name="researcher", register=False))
    registry.register_factory("brainstorm", lambda c: Agent(name="brainstorm", register=False))
    with pytest.raises(AgentNotFoundError) as info:
        registry.resolve("writer", ctx())
    error = info.value
    assert error.agent_type == "writer"
    assert error.available_types == ["brainstorm", "researcher"]
    assert "writer" in str(error) and "brainstorm, researcher" in str(error)
    assert isinstance(error, UserError)
    with pytest.raises(AgentNotFoundError, match="none registered"):
        AgentRegistry().resolve("x", ctx())


async def test_the_server_resolves_through_registry_factories(make_runtime: Any) -> None:
    registry = AgentRegistry()
    contexts: list[AgentFactoryContext] = []

    def build(context: AgentFactoryContext) -> Agent:
        contexts.append(context)
        return Agent(name="keyed", system_prompt=context.env["API_KEY"], register=False)

    registry.register_factory("keyed", build)
    llm = ScriptedLLM(["hello"])
    rt = make_runtime(registry, llm, env={"API_KEY": "secret-from-env"})
    response = await rt.call("f1", "POST", "/start", json={
        "agentType": "keyed", "sessionId": "f1", "userId": "u1", "input": {"message": "hi"}})
    assert response.status == 200
    assert (await rt.wait("f1"))["output"] == "hello"
    assert llm.requests[0].system == "secret-from-env"
    assert contexts[0].session_id == "f1" and contexts[0].user_id == "u1"
    assert contexts[0].run_id == response.json()["runId"]
    assert await rt.backend.agents() == ["keyed"]


async def test_a_resolver_callable_works_in_place_of_a_registry(make_runtime: Any) -> None:
    agent = Agent(name="solo", register=False)

    def resolver(agent_type: str, context: AgentFactoryContext) -> Agent:
        if agent_type != "solo":
            raise AgentNotFoundError(agent_type, ["solo"])
        return agent

    rt = make_runtime(resolver, ScriptedLLM(["fine"]))
    assert (await rt.run("r1", agent_type="solo"))["output"] == "fine"
    missing = await rt.start("r2", agent_type="nobody")
    assert missing.status == 404
    assert error_of(missing)["availableTypes"] == ["solo"]


async def test_a_resolver_returning_a_non_agent_is_a_400(make_runtime: Any) -> None:
    rt = make_runtime(lambda agent_type, context: "not an agent", ScriptedLLM(["x"]))
    response = await rt.start("bad", agent_type="anything")
    assert response.status == 400
    assert "not an Agent" in error_of(response)["message"]


# -- scoped registration, and agents found where they are defined ------------------------


def test_override_registers_for_the_block_and_restores_the_registry() -> None:
    registry = AgentRegistry()
    kept, replaced = Agent(name="kept", register=False), Agent(name="swap", register=False)
    registry.register(kept)
    registry.register(replaced)
    stand_in = Agent(name="swap", register=False)
    built = Agent(name="built", register=False)

    with registry.override(stand_in, built=lambda context: built) as inside:
        assert inside is registry
        assert registry.get("swap") is stand_in
        assert registry.resolve("built", ctx()) is built
        registry.unregister("kept")  # changes inside the block are undone too
        registry.register(Agent(name="extra", register=False))

    assert registry.get("swap") is replaced and registry.get("kept") is kept
    assert registry.get_registered_types() == ["kept", "swap"]


def test_override_restores_the_registry_when_the_block_raises() -> None:
    registry = AgentRegistry()
    with pytest.raises(RuntimeError), registry.override(Agent(name="temp", register=False)):
        assert registry.has("temp")
        raise RuntimeError("boom")
    assert not registry.has("temp")


def test_agents_in_a_namespace_include_sub_agents_but_not_hidden_ones() -> None:
    from helix_lab.runtime.registry import agents_in

    inner = Agent(name="inner")
    hidden = Agent(name="hidden", register=False)
    outer = Agent(name="outer", agents=[inner, hidden])
    namespace = {"outer": outer, "alias": outer, "hidden": hidden, "number": 3, "text": "x"}
    assert agents_in(namespace) == {"inner": inner, "outer": outer}


def test_namespace_agents_are_read_live_before_the_fallbacks() -> None:
    from helix_lab.runtime.registry import NamespaceAgents

    namespace: dict[str, Any] = {}
    fallback = AgentRegistry()
    bundled = Agent(name="shared", register=False)
    fallback.register(bundled)
    fallback.register_factory("made", lambda context: Agent(name="made", register=False))
    agents = NamespaceAgents(namespace, fallback)

    assert agents.get_registered_types() == ["made", "shared"]
    assert agents.resolve("shared", ctx()) is bundled
    mine = Agent(name="shared")
    namespace["mine"] = mine  # a cell defines an agent of the same name: it wins
    assert agents.resolve("shared", ctx()) is mine and agents.get("shared") is mine
    namespace["mine"] = Agent(name="shared", system_prompt="v2")  # and is redefined
    assert agents("shared", ctx()).system_prompt == "v2"
    assert agents.resolve("made", ctx()).name == "made"
    assert agents.get("made") is None  # a factory is not called to answer get()
    assert "made" in agents and "nobody" not in agents
    with pytest.raises(AgentNotFoundError) as info:
        agents.resolve("nobody", ctx())
    assert info.value.available_types == ["made", "shared"]


async def test_a_server_runs_agents_defined_after_it_was_built(make_runtime: Any) -> None:
    from helix_lab.runtime.registry import NamespaceAgents

    namespace: dict[str, Any] = {}
    rt = make_runtime(NamespaceAgents(namespace), ScriptedLLM(["late answer"]))
    namespace["late"] = Agent(name="late")
    assert (await rt.run("s-late", agent_type="late"))["output"] == "late answer"
    assert await rt.backend.agents() == ["late"]
